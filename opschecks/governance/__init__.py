"""Governance checks: the policy gate, provenance and sensitivity rules hold in every store."""
