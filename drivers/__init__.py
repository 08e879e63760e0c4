"""Protocol drivers: each turns a device into readings; see `drivers.base` for the interface."""
