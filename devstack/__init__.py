"""The kfm-ops local service stack (stdlib only): ``devstack/stack`` runs it; tests import it."""
