"""The embedded default configuration and worked examples (TOML files)."""
