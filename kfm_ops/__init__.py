"""kfm-ops: operational checks and safe maintenance for the KFM backend.

One core — settings → service clients → safety gates → report — with two thin
faces on it: the pytest checks in ``opschecks`` and the ``kfm-maint`` actions in
``maintenance``.
"""

__version__ = "0.1.0"
