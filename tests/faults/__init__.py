"""Fault injection for tests: a small tmpfs that fills up, a FUSE filesystem that loses un-fsynced writes."""
