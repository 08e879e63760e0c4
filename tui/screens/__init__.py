"""The TUI's screens: overview, device, discover, config, events (each a module with its DEFAULT_CSS)."""
