package kfm.catalog.sensitivity

# Generalization grid, in degrees, for restricted geometry outside the canonical store.
grid_degrees = 0.1
