"""Bluetooth Low Energy: advertisement sensors (BTHome v2, Ruuvi, raw) and GATT devices, on bleak and BlueZ."""
