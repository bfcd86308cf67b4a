"""The kfm-ops local service stack (stdlib only): ``devstack/stack`` runs it; tests import it.

Modules: config (env files, defaults, harness settings, state paths), errors, pins (versions),
processes (pid files, process trees, stop), net (ports, loopback HTTP), binaries (where things
are installed), install (apt, Maven, Go, venv steps), sensitive (secret masking, 0600 files),
scram (PostgreSQL password verifiers), services/<name> (one module per server), commands and cli.
"""
