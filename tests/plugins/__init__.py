"""Small pytest plugins of kfm-ops's own test suite (loaded by tests/conftest.py)."""
