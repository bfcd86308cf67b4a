"""The pytest face of kfm-ops: the plugin (entry point ``pytest11: kfm_ops``), its fixtures, the assertion helpers."""
