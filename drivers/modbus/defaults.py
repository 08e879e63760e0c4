"""Every Modbus timeout, size, interval and limit default, named, in one place."""

from __future__ import annotations

from typing import Final

# -- protocol limits (Modbus application protocol v1.1b3) ---------------------------------------------
MAX_REGISTERS_PER_READ: Final = 125
"""FC 3/4 read at most 125 registers per request."""
MAX_BITS_PER_READ: Final = 2000
"""FC 1/2 read at most 2000 coils/discrete inputs per request."""
MAX_REGISTERS_PER_WRITE: Final = 123
"""FC 16 writes at most 123 registers per request."""
MAX_ADDRESS: Final = 65535
"""Addresses are 16-bit, 0-based."""
MAX_TCP_UNIT: Final = 255
MAX_RTU_UNIT: Final = 247
REGISTER_BITS: Final = 16

# -- planner -------------------------------------------------------------------------------------------
DEFAULT_MAX_GAP: Final = 8
"""Unused registers (or bits) a read may bridge to merge two neighbouring points into one request."""

# -- device and bus timing -----------------------------------------------------------------------------
DEFAULT_TCP_PORT: Final = 502
DEFAULT_UNIT: Final = 1
DEFAULT_RETRIES: Final = 1
"""Extra attempts after a timeout before a unit is declared not responding and backed off."""
MAX_RETRIES: Final = 10
DEFAULT_PAUSE_BETWEEN_REQUESTS: Final = 0.0
"""Seconds of silence on the bus before each request (on top of the RTU inter-frame gap)."""
DEFAULT_BACKOFF_INITIAL: Final = 1.0
"""First wait before probing a unit that stopped answering, or reconnecting a bus that went down."""
DEFAULT_BACKOFF_MAX: Final = 30.0
"""Longest wait between probes / reconnects."""
BACKOFF_FACTOR: Final = 2.0
BACKOFF_JITTER: Final = 0.25
"""Delays are randomised in [delay·(1-jitter), delay], so many devices do not retry in lockstep."""
FAILURE_SUMMARY_INTERVAL: Final = 60.0
"""While a bus keeps failing (connects refused, or connections dropped before their first answer), the first
failure is logged as a warning and the rest at debug, with one "still failing" summary at most this often."""
TCP_STALE_AFTER_TIMEOUTS: Final = 3
"""Consecutive timeouts with no answer from any unit after which a TCP connection is presumed half-open
and is closed and reopened (a device rebooted without sending FIN/RST)."""

# -- serial line ---------------------------------------------------------------------------------------
DEFAULT_BAUDRATE: Final = 9600
DEFAULT_PARITY: Final = "N"
DEFAULT_STOPBITS: Final = 1
DEFAULT_BYTESIZE: Final = 8
RTU_FIXED_GAP_ABOVE_BAUD: Final = 19200
"""Above this baud rate the spec fixes the inter-frame gap instead of 3.5 character times."""
RTU_FIXED_GAP: Final = 0.00175
"""Inter-frame gap (t3.5) in seconds for baud rates above RTU_FIXED_GAP_ABOVE_BAUD."""
RTU_GAP_CHARACTERS: Final = 3.5

# -- discovery -----------------------------------------------------------------------------------------
DISCOVERY_TIMEOUT: Final = 0.3
"""Seconds to wait for each unit id during a scan."""
DISCOVERY_REGISTERS: Final = 4
"""Registers read from each responder to show what it holds."""

# -- simulator -----------------------------------------------------------------------------------------
SIMULATOR_REGISTERS: Final = 2000
"""Registers (and bits) in each table of each simulated unit."""
