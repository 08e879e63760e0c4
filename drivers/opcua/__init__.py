"""OPC-UA driver (asyncua): subscribe and poll modes, security with a local trust folder, recovery.

Config models live in `config` (light, pydantic only); everything that imports asyncua is loaded lazily.
"""
