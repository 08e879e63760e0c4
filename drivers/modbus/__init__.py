"""Modbus TCP and RTU: config, codec, request planner, shared buses, the driver, discovery and a simulator."""
