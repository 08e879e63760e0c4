"""Store-and-forward: the durable, seq-numbered queue of readings with per-sink and per-consumer cursors."""

from edge.store.options import StoreOptions
from edge.store.store import DeadLetter, Event, Store, StoreLocked

__all__ = ["DeadLetter", "Event", "Store", "StoreLocked", "StoreOptions"]
