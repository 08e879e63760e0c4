"""Sinks: deliver stored readings to cloud and enterprise systems, each with its own durable cursor."""
