"""The simulator driver: synthetic signals for demos, tests and benchmarks."""
