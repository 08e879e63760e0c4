"""Tests of the Modbus TCP/RTU driver against real peers."""
