"""Contract checks: each store's live shape matches the KFM contract files."""
