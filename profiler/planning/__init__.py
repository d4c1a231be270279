"""What to measure: scenarios (flags + TOML) and the plan of points with stable ids."""
