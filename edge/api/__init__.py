"""The HTTP API (aiohttp): pull API for central systems, admin operations for the TUI and scripts."""
