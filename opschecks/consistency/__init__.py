"""Cross-store consistency: the derived stores match the canonical store, and are fresh."""
