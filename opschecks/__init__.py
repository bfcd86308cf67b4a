"""The kfm-ops checks: health, contract, governance and cross-store consistency.

Run them with ``pytest --pyargs opschecks -m smoke`` or ``kfm-maint check``.
"""
