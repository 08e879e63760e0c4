"""The store's single writer thread: batches every change into one transaction per commit interval.

Appends, cursor moves, events and dead letters are queued as commands; the writer applies a batch of them
in one transaction with one fsync (WAL, synchronous=FULL), then publishes the new durable seq. It also
removes acknowledged rows, applies retention, and handles a full disk by the configured policy.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from edge.reading import Reading
from edge.store.codec import KIND_BOOL, Q_CODE, encode_value
from edge.store.options import StoreOptions

log = logging.getLogger("edge.store")

SQLITE_FULL = 13
SQLITE_IOERR = 10

# Full disk. In WAL mode even a DELETE needs room (its frames go to the WAL, and a checkpoint may have to
# grow the database file first), so a store that filled the disk to the last byte could not drop anything.
# The writer therefore keeps a spare file next to the store and deletes it to get that room back.
SPARE_NAME = "store.spare"
SPARE_BYTES = 2 * 1024 * 1024  # disk kept free for the full-disk path (>= one WAL checkpoint's growth)
FULL_DROP_ROUNDS = 8  # drop-oldest-and-retry rounds for one batch before its readings are refused
FULL_DROP_FRACTION = 20  # each round drops at least 1/20 of the held readings (and at least the batch size)


@dataclass
class Command:
    """One queued change. `op` names the method `_op_<op>` that applies it inside the transaction."""

    op: str
    args: tuple[Any, ...] = ()
    future: Future[Any] | None = None
    readings: int = 0  # how many readings it carries (for backpressure accounting)


@dataclass
class WriterState:
    """What the writer publishes for other threads; plain attributes, read without locks."""

    last_seq: int = 0  # highest seq assigned and committed (durable)
    first_seq: int = 1  # lowest seq still in the table (last_seq + 1 when empty)
    full: bool = False  # the last append needed space that was not there
    commits: int = 0
    last_commit: float = 0.0
    last_commit_readings: int = 0
    counters: dict[str, int] = field(default_factory=dict)


class Writer:
    """Owns the write connection; all mutations of the store happen on its thread."""

    def __init__(
        self,
        con: sqlite3.Connection,
        options: StoreOptions,
        series: dict[tuple[str, str, str | None], int],
        reserve_path: str,
        on_commit: Callable[[int], None],
        on_space: Callable[[], None],
    ) -> None:
        self.con = con
        self.opt = options
        self.series = series  # (device, point, unit) -> id; shared (read-only) with readers
        self.series_by_id: dict[int, tuple[str, str, str | None]] = {v: k for k, v in series.items()}
        self.reserve_path = reserve_path
        self.spare_path = os.path.join(os.path.dirname(reserve_path), SPARE_NAME)
        self.full_counts = {"dropped": 0, "rejected": 0}  # since the store became full (for the events)
        self.on_commit = on_commit
        self.on_space = on_space
        self.state = WriterState()
        self.cv = threading.Condition()
        self.queue: collections.deque[Command] = collections.deque()
        self.pending = 0  # readings queued and not yet taken by the writer
        self.closing = False
        self.thread = threading.Thread(target=self._run, name="edge-store-writer", daemon=True)
        self._load_state()
        self._restore_spare()

    # -- queue side (any thread) ----------------------------------------------------------------------

    def submit(self, cmd: Command) -> None:
        with self.cv:
            if self.closing and cmd.op != "close":
                raise RuntimeError("store is closed")
            self.queue.append(cmd)
            self.pending += cmd.readings
            self.cv.notify()

    # -- thread ---------------------------------------------------------------------------------------

    def _load_state(self) -> None:
        con = self.con
        last = con.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
        reserve = self._read_reserve()
        if last < reserve and con.execute("SELECT count(*) FROM readings").fetchone()[0] == 0 and last == 0:
            # A new store where an earlier one existed (reset or moved aside): never reuse its seqs.
            con.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (reserve,))
            self._event_now("seq_jump", f"new store continues after seq {reserve} reserved by the previous one",
                            {"from": reserve})
            last = reserve
        self.state.last_seq = last
        first = con.execute("SELECT min(seq) FROM readings").fetchone()[0]
        self.state.first_seq = first if first is not None else last + 1
        self.state.counters = dict(con.execute("SELECT name, value FROM counters").fetchall())
        self.reserved = max(reserve, last)

    def _read_reserve(self) -> int:
        try:
            with open(self.reserve_path) as f:
                return int(f.read().strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as e:
            log.warning("seq reserve file %s unreadable (%s); relying on the store", self.reserve_path, e)
            return 0

    def _write_reserve(self, upto: int) -> None:
        tmp = self.reserve_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{upto}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.reserve_path)
        dfd = os.open(os.path.dirname(self.reserve_path) or ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self.reserved = upto

    def _run(self) -> None:
        opt = self.opt
        batch: list[Command] = []
        batch_readings = 0
        deadline: float | None = None
        next_maint = time.monotonic() + opt.maintenance_interval
        while True:
            with self.cv:
                while not self.queue and not self.closing:
                    now = time.monotonic()
                    until = next_maint if deadline is None else min(deadline, next_maint)
                    if until <= now:
                        break
                    self.cv.wait(until - now)
                taken: list[Command] = []
                while self.queue and batch_readings < opt.max_batch:
                    cmd = self.queue.popleft()
                    taken.append(cmd)
                    batch_readings += cmd.readings
                    self.pending -= cmd.readings
                closing = self.closing and not self.queue
            if taken:
                if deadline is None:
                    deadline = time.monotonic() + opt.commit_interval
                batch.extend(taken)
                if any(c.readings for c in taken):
                    self.on_space()
            now = time.monotonic()
            urgent = any(c.op in ("flush", "close", "maintain") for c in taken)
            if batch and (urgent or closing or now >= (deadline or now) or batch_readings >= opt.max_batch):
                self._commit_batch(batch)
                maintain = [c for c in batch if c.op == "maintain"]
                batch, batch_readings, deadline = [], 0, None
                if maintain:  # asked for explicitly: run it now, then answer
                    self._guard(self._maintain)
                    for c in maintain:
                        if c.future is not None and not c.future.done():
                            c.future.set_result(self.state.first_seq)
            if now >= next_maint and not closing:
                self._guard(self._maintain)
                next_maint = time.monotonic() + opt.maintenance_interval
            if closing:
                self._guard(lambda: self.con.execute("PRAGMA optimize"))
                return

    def _guard(self, fn: Callable[[], Any]) -> None:
        """Run maintenance; its failure is logged, never kills the writer."""
        try:
            fn()
        except Exception:
            log.exception("store maintenance failed")
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")

    # -- transactions ---------------------------------------------------------------------------------

    def _commit_batch(self, batch: list[Command]) -> None:
        try:
            results = self._transaction(batch)
        except sqlite3.OperationalError as e:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            if getattr(e, "sqlite_errorcode", None) == SQLITE_FULL or "full" in str(e):
                results = self._on_full(batch, e)
            else:
                log.exception("store write failed")
                self._fail(batch, e)
                return
        except Exception as e:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            log.exception("store write failed")
            self._fail(batch, e)
            return
        self.state.commits += 1
        self.state.last_commit = time.time()
        self.on_commit(self.state.last_seq)
        for cmd, result in zip(batch, results, strict=True):
            if cmd.future is not None and not cmd.future.done() and cmd.op != "maintain":
                cmd.future.set_result(result)

    def _fail(self, batch: list[Command], error: BaseException) -> None:
        for cmd in batch:
            if cmd.future is not None and not cmd.future.done():
                cmd.future.set_exception(error)

    def _transaction(self, batch: list[Command], skip_readings: bool = False) -> list[Any]:
        """Apply the whole batch in one transaction; on error the caller rolls back and state is restored."""
        con = self.con
        saved_last = self.state.last_seq
        saved_counters = dict(self.state.counters)
        new_series: list[tuple[str, str, str | None]] = []
        self._new_series = new_series
        con.execute("BEGIN IMMEDIATE")
        try:
            results: list[Any] = []
            readings = 0
            for cmd in batch:
                if cmd.op == "append":
                    if skip_readings:
                        results.append(None)
                        continue
                    readings += self._op_append(cmd.args[0])
                    results.append(None)
                else:
                    results.append(getattr(self, "_op_" + cmd.op)(*cmd.args))
            if self.state.last_seq != saved_last:
                if self.state.last_seq > self.reserved:
                    self._write_reserve(self.state.last_seq + self.opt.seq_reserve)
                con.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (self.state.last_seq,))
            self._save_counters(saved_counters)
            con.execute("COMMIT")
            self.state.last_commit_readings = readings
            return results
        except BaseException:
            self.state.last_seq = saved_last
            self.state.counters = saved_counters
            for key in new_series:
                sid = self.series.pop(key, None)
                if sid is not None:
                    self.series_by_id.pop(sid, None)
            raise

    def _save_counters(self, before: dict[str, int]) -> None:
        changed = [(k, v) for k, v in self.state.counters.items() if before.get(k) != v]
        if changed:
            self.con.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?)", changed)

    def count(self, name: str, n: int) -> None:
        self.state.counters[name] = self.state.counters.get(name, 0) + n

    def _series_id(self, key: tuple[str, str, str | None]) -> int:
        cur = self.con.execute("INSERT INTO series (device, point, unit) VALUES (?, ?, ?)", key)
        sid = cur.lastrowid
        assert sid is not None
        self.series[key] = sid
        self.series_by_id[sid] = key
        self._new_series.append(key)
        return sid

    def _op_append(self, readings: list[Reading]) -> int:
        series = self.series
        seq = self.state.last_seq
        q_code = Q_CODE
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        for r in readings:
            key = (r.device, r.point, r.unit)
            sid = series.get(key)
            if sid is None:
                sid = self._series_id(key)
            v = r.value
            t = type(v)
            if t is float or t is int or v is None or t is str:
                flags = q_code[r.quality]
            elif t is bool:
                v, flags = int(v), q_code[r.quality] | KIND_BOOL
            else:
                v, kind = encode_value(v)
                flags = q_code[r.quality] | kind
            seq += 1
            r.seq = seq
            append((seq, r.ts, sid, v, flags, r.error))
        self.con.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?)", rows)
        self.state.last_seq = seq
        self.count("readings_in", len(rows))
        return len(rows)

    def _op_cursor(self, name: str, kind: str, seq: int) -> int:
        seq = max(0, min(seq, self.state.last_seq))
        self.con.execute(
            "INSERT INTO cursors VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET seq = excluded.seq, "
            "kind = excluded.kind, updated = excluded.updated",
            (name, kind, seq, time.time()),
        )
        return seq

    def _op_register(self, name: str, kind: str, start: int | None) -> int:
        """Create a cursor if missing (at `start`, default: before the oldest retained reading)."""
        row = self.con.execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return int(row[0])
        seq = self.state.first_seq - 1 if start is None else start
        self.con.execute("INSERT INTO cursors VALUES (?, ?, ?, ?)", (name, kind, seq, time.time()))
        return seq

    def _op_drop_cursor(self, name: str) -> bool:
        return self.con.execute("DELETE FROM cursors WHERE name = ?", (name,)).rowcount > 0

    def _op_event(self, ts: float, kind: str, message: str, data: dict[str, Any] | None) -> int:
        cur = self.con.execute(
            "INSERT INTO events (ts, kind, message, data) VALUES (?, ?, ?, ?)",
            (ts, kind, message, json.dumps(data) if data else None),
        )
        return int(cur.lastrowid or 0)

    def _event_now(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        """An event written outside the batch queue (from the writer itself), in the current connection state."""
        log.warning("%s: %s", kind, message)
        self._op_event(time.time(), kind, message, data)

    def _op_dead_letter(self, sink: str, first: int, last: int, count: int, error: str, payload: bytes) -> int:
        cur = self.con.execute(
            "INSERT INTO dead_letters (ts, sink, first_seq, last_seq, count, error, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time.time(), sink, first, last, count, error, payload),
        )
        self.count("dead_letters", 1)
        return int(cur.lastrowid or 0)

    def _op_delete_dead_letter(self, ident: int) -> bool:
        return self.con.execute("DELETE FROM dead_letters WHERE id = ?", (ident,)).rowcount > 0

    def _op_count(self, name: str, n: int) -> None:
        self.count(name, n)

    def _op_maintain(self) -> None:
        """Answered after the commit, once maintenance has run (see _run)."""

    def _op_flush(self) -> int:
        return self.state.last_seq

    def _op_close(self) -> int:
        return self.state.last_seq

    # -- full disk and retention ----------------------------------------------------------------------

    def _on_full(self, batch: list[Command], error: Exception) -> list[Any]:
        n_readings = sum(len(c.args[0]) for c in batch if c.op == "append")
        if not self.state.full:
            log.error("store is full (%s); applying full_policy=%s", error, self.opt.full_policy)
        self.state.full = True
        if self.opt.full_policy == "drop_oldest":
            for _ in range(8):
                freed = self._drop_oldest_for_space(max(n_readings, 1000))
                if freed == 0:
                    break
                try:
                    results = self._transaction(batch)
                    self._after_full("drop_oldest", 0)
                    return results
                except sqlite3.OperationalError:
                    if self.con.in_transaction:
                        self.con.execute("ROLLBACK")
        # reject_new, or nothing left to drop: refuse the readings, keep the other changes.
        for cmd in batch:
            if cmd.op == "append":
                for r in cmd.args[0]:
                    r.seq = 0
        try:
            results = self._transaction(batch, skip_readings=True)
        except sqlite3.OperationalError:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            results = [None] * len(batch)
        self._after_full("rejected", n_readings)
        return results

    def _after_full(self, what: str, rejected: int) -> None:
        if rejected:
            self.count("rejected_full", rejected)
            msg = f"store full: {rejected} new readings rejected (full_policy={self.opt.full_policy})"
            self._try_event("store_full", msg, {"rejected": rejected})
        else:
            self.state.full = False

    def _try_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        log.warning("%s: %s", kind, message)
        try:
            self.con.execute("BEGIN IMMEDIATE")
            self._op_event(time.time(), kind, message, data)
            self._save_counters({})
            self.con.execute("COMMIT")
        except sqlite3.OperationalError:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")

    def _drop_oldest_for_space(self, rows_wanted: int) -> int:
        """Delete the oldest readings to make room; returns how many were dropped (counted, logged)."""
        try:
            self.con.execute("PRAGMA wal_checkpoint(RESTART)")
        except sqlite3.OperationalError:
            pass
        first, last = self.state.first_seq, self.state.last_seq
        if first > last:
            return 0
        n = min(last - first + 1, max(rows_wanted, (last - first + 1) // 20))
        upto = first + n - 1
        try:
            self._delete_prefix(upto, reason="full", log_event=True)
        except sqlite3.OperationalError as e:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            log.error("could not drop oldest readings to free space: %s", e)
            return 0
        return n

    def _delete_prefix(self, upto: int, reason: str | None, log_event: bool = False) -> int:
        """Delete readings with seq <= upto in one transaction. reason=None means: acknowledged by all."""
        first = self.state.first_seq
        if upto < first:
            return 0
        upto = min(upto, self.state.last_seq)
        n = upto - first + 1
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM readings WHERE seq <= ?", (upto,))
            before = dict(self.state.counters)
            if reason is None:
                self.count("removed_acked", n)
            else:
                self.count(f"dropped_{reason}", n)
                msg = f"{n} readings dropped by retention ({reason}): seq {first}..{upto}"
                log.warning(msg)
                self._op_event(time.time(), "retention_drop", msg,
                               {"reason": reason, "count": n, "first_seq": first, "last_seq": upto})
            self._save_counters(before)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        self.state.first_seq = upto + 1
        return n

    def _maintain(self) -> None:
        """Remove what every cursor has, then apply max_age and max_bytes."""
        con, opt, st = self.con, self.opt, self.state
        cursors = [r[0] for r in con.execute("SELECT seq FROM cursors").fetchall()]
        if cursors:
            upto = min(min(cursors), st.first_seq + opt.gc_chunk - 1)
            self._delete_prefix(upto, None)
        elif st.first_seq <= st.last_seq and opt.max_age > 0:
            cutoff = time.time() - opt.max_age
            row = con.execute("SELECT ts FROM readings WHERE seq = ?", (st.first_seq,)).fetchone()
            if row is not None and row[0] < cutoff:
                nxt = con.execute(
                    "SELECT seq FROM readings WHERE ts >= ? AND seq <= ? ORDER BY seq LIMIT 1",
                    (cutoff, st.first_seq + opt.gc_chunk),
                ).fetchone()
                upto = (nxt[0] - 1) if nxt else min(st.last_seq, st.first_seq + opt.gc_chunk - 1)
                self._delete_prefix(upto, "max_age")
        used = self.used_bytes()
        if used > opt.max_bytes and st.first_seq <= st.last_seq:
            rows = st.last_seq - st.first_seq + 1
            per_row = max(used / rows, 1.0)
            excess = used - int(opt.max_bytes * 0.95)
            n = min(rows, max(1, int(excess / per_row) + 1), opt.gc_chunk)
            self._delete_prefix(st.first_seq + n - 1, "max_bytes")
        ev = con.execute("SELECT max(id) FROM events").fetchone()[0]
        if ev is not None and ev > opt.max_events:
            con.execute("DELETE FROM events WHERE id <= ?", (ev - opt.max_events,))

    def used_bytes(self) -> int:
        page_size = self.con.execute("PRAGMA page_size").fetchone()[0]
        pages = self.con.execute("PRAGMA page_count").fetchone()[0]
        free = self.con.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)
