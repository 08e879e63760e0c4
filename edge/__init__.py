"""edge: an edge integration appliance — poll field devices, store and forward readings."""

__version__ = "0.1.0"
