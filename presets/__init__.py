"""Per-target presets (data): JSON configs, receiver scripts and patches."""
