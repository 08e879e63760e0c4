"""The store's single writer thread: batches every change into one transaction per commit interval.

Appends, cursor moves, events and dead letters are queued as commands; the writer applies a batch of them
in one transaction with one fsync (WAL, synchronous=FULL), then publishes the new durable seq. It also
removes acknowledged rows, applies retention (readings: max_age, max_bytes; dead letters: their own budget),
and handles a full disk by the configured policy.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from edge.reading import BAD, Reading
from edge.store.codec import KIND_BOOL, Q_CODE, SQLITE_INT_MAX, SQLITE_INT_MIN, encode_value
from edge.store.options import StoreOptions

log = logging.getLogger("edge.store")

SQLITE_FULL = 13
SQLITE_IOERR = 10

# Full disk. In WAL mode even a DELETE needs room (its frames go to the WAL, and a checkpoint may first have to
# grow the database file), so a store that filled the disk to the last byte could not drop anything. The writer
# therefore (1) treats the disk as full while less than FULL_LOW_WATER is free and the database file has no free
# pages for the batch, and applies full_policy before SQLite runs out of room (drop_oldest: delete the oldest
# readings so new ones reuse their pages and the file stops growing); (2) keeps a spare file next to the store and
# releases it when SQLite still reports SQLITE_FULL (another program filled the disk), so the checkpoint and the
# drops can be written.
SPARE_NAME = "store.spare"
SPARE_BYTES = 4 * 1024 * 1024  # the spare file (> what one checkpoint may grow the database file)
WAL_AUTOCHECKPOINT_BYTES = 1024 * 1024  # checkpoint at this WAL size, so a checkpoint grows the file by less
FULL_LOW_WATER = 2 * 1024 * 1024  # free disk below which appends must fit in the database's free pages
FULL_CLEAR_FREE = 2 * FULL_LOW_WATER  # free disk at which a full store counts as having room again
FULL_DROP_ROUNDS = 8  # drop-oldest-and-retry rounds for one batch before its readings are refused
FULL_DROP_FRACTION = 20  # each drop takes at least 1/20 of the held readings (and at least the batch's room)
ROW_BYTES_GUESS = 64  # bytes per stored reading before there are rows to measure
URGENT_OPS = frozenset({"flush", "close", "maintain"})  # commands that commit the batch at once
# Readings without an error are inserted with the error column as a NULL literal: binding None costs the
# sqlite3 module an adapter lookup (~0.4 us a row on 3.11, a third of the whole insert).
INSERT_PLAIN = "INSERT INTO readings VALUES (?, ?, ?, ?, ?, NULL)"
INSERT_WITH_ERROR = "INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?)"
UNSTORABLE = (OverflowError, UnicodeEncodeError, ValueError, sqlite3.InterfaceError)  # a value SQLite refuses
TAIL_READINGS = 10_000  # newest committed readings kept in memory (~1.5 MB), so sinks read them without SQLite
# Dead letters have a size budget of their own (dead_letter_max_bytes), apart from the readings' max_bytes. The
# writer keeps their count, readings and bytes per sink in memory (loaded once at open, updated with every
# change it commits), so stats and /metrics never count rows, and max_bytes is held against used_bytes() less
# the dead letters' bytes. Their bytes are what their rows take in the file's pages, by SQLite's record layout
# (dead_letter_footprint): exact for the overflow pages that hold large payloads, within a few percent overall.
DEAD_LETTER_RECORD_OVERHEAD = 28  # record header, ts, first/last seq and count, besides sink, error, payload
DEAD_LETTER_CELL_OVERHEAD = 6  # the cell's size and rowid varints and its 2-byte pointer in the leaf page
LEAF_HEADER = 8  # bytes of a table leaf page that hold no cell
DEAD_LETTER_DROP_MAX = 64 * 1024 * 1024  # bytes of dead letters one maintenance pass deletes at most
DEAD_LETTER_LOW_WATER = 0.9  # past their budget, dead letters are dropped down to this share of it: a steady
# stream of them (a receiver refusing everything) costs a drop and its event now and then, not every second
DEAD_LETTER_ROW_SIZES = ("SELECT id, sink, count, length(payload) + length(CAST(error AS BLOB)) "
                         "+ length(CAST(sink AS BLOB)) FROM dead_letters")  # length() reads no overflow page


def dead_letter_footprint(data_bytes: int, page_size: int) -> int:
    """Bytes of database pages one dead letter's row takes, given the bytes of its sink, error and payload:
    its share of a table leaf page (rows are appended, so leaf pages hold as many whole cells as fit), plus
    the overflow pages a large payload spills to (the rule of SQLite's btree.c)."""
    record = data_bytes + DEAD_LETTER_RECORD_OVERHEAD
    max_local = page_size - 35
    overflow_pages = 0
    local = record
    if record > max_local:
        min_local = (page_size - 12) * 32 // 255 - 23
        local = min_local + (record - min_local) % (page_size - 4)
        if local > max_local:
            local = min_local
        overflow_pages = -(-(record - local) // (page_size - 4))
    cell = local + DEAD_LETTER_CELL_OVERHEAD + (4 if overflow_pages else 0)
    per_leaf = max(1, (page_size - LEAF_HEADER) // cell)
    return -(-page_size // per_leaf) + overflow_pages * page_size


def _is_full(e: BaseException) -> bool:
    """SQLITE_FULL: the disk (or the file size limit) has no room for the write."""
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return bool((code & 0xFF) == SQLITE_FULL)
    return "full" in str(e)


class StillFull(Exception):
    """Not even the batch without its readings fits: they are counted as rejected_full already."""


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
    # committed dead letters per sink: (batches, readings, bytes); replaced, never changed in place
    dead_letters: dict[str, tuple[int, int, int]] = field(default_factory=dict)


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
        self._full_event = False  # the store_full event is still to be written
        self._full_why = ""  # what made the store full (for the event)
        self._spare_ok = False  # the spare file is in place at full size
        self.on_commit = on_commit
        self.on_space = on_space
        self.state = WriterState()
        self.cv = threading.Condition()
        self.queue: collections.deque[Command] = collections.deque()
        self.pending = 0  # readings queued and not yet taken by the writer
        self.closing = False
        self._lazy = False  # the writer sleeps until its batch's commit deadline: new commands need not wake it
        self._wake_pending = min(options.max_batch, options.max_pending)
        # The newest committed readings, as (first seq, readings with contiguous seqs) per append, in seq order.
        # Readers take from here what is still in it (`recent`) instead of SELECTing and rebuilding it.
        self.tail: collections.deque[tuple[int, list[Reading]]] = collections.deque()
        self.tail_readings = 0
        self.tail_lock = threading.Lock()
        self._tail_ok = True  # the batch being written may go to the tail (see _op_append)
        self.thread = threading.Thread(target=self._run, name="edge-store-writer", daemon=True)
        self.page_size: int = con.execute("PRAGMA page_size").fetchone()[0]  # fixed once the file exists
        self._load_state()
        con.execute(f"PRAGMA wal_autocheckpoint = {max(WAL_AUTOCHECKPOINT_BYTES // self.page_size, 16)}")
        self._restore_spare()

    # -- queue side (any thread) ----------------------------------------------------------------------

    def submit(self, cmd: Command) -> None:
        with self.cv:
            if self.closing and cmd.op != "close":
                raise RuntimeError("store is closed")
            self.queue.append(cmd)
            self.pending += cmd.readings
            # While a batch waits for its deadline, whatever comes is taken then, in the same commit: waking the
            # thread for each append (500/s at 50 devices @ 100 ms) only cost CPU and GIL hand-offs.
            if not self._lazy or cmd.op in URGENT_OPS or self.pending >= self._wake_pending:
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
        self._persisted = dict(self.state.counters)
        self.reserved = max(reserve, last)
        dead: dict[str, tuple[int, int, int]] = {}
        for _, sink, count, data_bytes in con.execute(DEAD_LETTER_ROW_SIZES):  # leaf pages only: cheap, once
            b, r, n = dead.get(sink, (0, 0, 0))
            dead[sink] = (b + 1, r + count, n + dead_letter_footprint(data_bytes, self.page_size))
        self._dead = dead  # the writer's own view, inside the transaction; state.dead_letters: committed
        self.state.dead_letters = dead

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
        try:
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
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # the same disk as the database: a full store (full_policy applies), not a failed batch
            full = sqlite3.OperationalError(f"database or disk is full (seq reserve file: {e.strerror})")
            full.sqlite_errorcode = SQLITE_FULL
            raise full from e
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
                    self._lazy = deadline is not None
                    self.cv.wait(until - now)
                self._lazy = False
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
            urgent = any(c.op in URGENT_OPS for c in taken)
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
            if self._has_room(batch):
                results = self._transaction(batch)
            elif self.opt.full_policy == "reject_new" and self._over_max_bytes():
                results = self._on_full(batch, "max_bytes reached", sqlite_full=False)
            else:
                results = self._on_full(batch, "less than the low-water mark of free disk", sqlite_full=False)
        except sqlite3.OperationalError as e:
            self._rollback()
            if _is_full(e):
                try:
                    results = self._on_full(batch, str(e), sqlite_full=True)
                except Exception as again:
                    self._rollback()
                    log.error("store full and the batch could not be written even without readings: %s", again)
                    self._fail(batch, again)
                    return
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
        self._keep_tail(batch)
        self.on_commit(self.state.last_seq)
        for cmd, result in zip(batch, results, strict=True):
            if cmd.future is not None and not cmd.future.done() and cmd.op != "maintain":
                cmd.future.set_result(result)

    def _keep_tail(self, batch: list[Command]) -> None:
        """After a commit: add its readings to the in-memory tail (or drop the tail when they may not go)."""
        appended = [c.args[0] for c in batch if c.op == "append" and c.args[0]]
        if not appended:
            return
        with self.tail_lock:
            if not self._tail_ok or self.state.full:
                self.tail.clear()  # readers fall back to SQLite until the tail holds contiguous seqs again
                self.tail_readings = 0
                return
            for readings in appended:
                self.tail.append((readings[0].seq, readings))
                self.tail_readings += len(readings)
            while self.tail_readings > TAIL_READINGS and len(self.tail) > 1:
                self.tail_readings -= len(self.tail.popleft()[1])

    def recent(self, after: int, upto: int, limit: int) -> list[Reading] | None:
        """Committed readings with after < seq <= upto (at most limit) from the tail; None if it lacks some."""
        with self.tail_lock:
            tail = self.tail
            if not tail or after + 1 < tail[0][0] or after + 1 < self.state.first_seq:
                return None
            out: list[Reading] = []
            for first, readings in tail:  # contiguous: every seq from tail[0][0] on is in it
                if first > upto:
                    break
                lo = max(after + 1 - first, 0)
                hi = min(len(readings), upto - first + 1, lo + limit - len(out))
                if lo < hi:
                    out.extend(readings[lo:hi])
                    if len(out) >= limit:
                        break
            return out

    def _fail(self, batch: list[Command], error: BaseException) -> None:
        lost = sum(c.readings for c in batch)
        if lost and not isinstance(error, StillFull):  # appends have no future: count them, or they would
            # vanish without a trace (StillFull: counted as rejected_full already, once is enough)
            self.count("dropped_write_error", lost)
            log.error("%d readings lost: the store could not write them (%s)", lost, error)
            self._try_save_counters()
        for cmd in batch:
            if cmd.future is not None and not cmd.future.done():
                cmd.future.set_exception(error)

    def _transaction(self, batch: list[Command], skip_readings: bool = False) -> list[Any]:
        """Apply the whole batch in one transaction; on error the caller rolls back and state is restored."""
        con = self.con
        saved_last = self.state.last_seq
        saved_counters = dict(self.state.counters)
        saved_dead = self._dead
        new_series: list[tuple[str, str, str | None]] = []
        self._new_series = new_series
        self._tail_ok = True
        con.execute("BEGIN IMMEDIATE")
        try:
            results: list[Any] = []
            readings = 0
            for cmd in batch:
                if cmd.op == "append":
                    if skip_readings:  # full disk, reject_new: refused readings get no seq, only a count
                        self.count("rejected_full", len(cmd.args[0]))
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
            self._save_counters()
            con.execute("COMMIT")
            self._committed_counters()
            self.state.dead_letters = self._dead
            self.state.last_commit_readings = readings
            return results
        except BaseException:
            for cmd in batch:  # the seqs given in this attempt will be given again: the objects must not keep them
                if cmd.op == "append":
                    for r in cmd.args[0]:
                        if r.seq > saved_last:
                            r.seq = 0
            self.state.last_seq = saved_last
            self.state.counters = saved_counters
            self._dead = saved_dead
            for key in new_series:
                sid = self.series.pop(key, None)
                if sid is not None:
                    self.series_by_id.pop(sid, None)
            raise

    def _save_counters(self) -> None:
        """Write (inside the caller's transaction) every counter that differs from what the file holds, also
        those counted outside a transaction (readings lost by a failed batch); `_committed_counters()` after
        COMMIT."""
        persisted = self._persisted
        changed = [(k, v) for k, v in self.state.counters.items() if persisted.get(k) != v]
        if changed:
            self.con.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?)", changed)

    def _committed_counters(self) -> None:
        self._persisted = dict(self.state.counters)

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
        with_error: list[tuple[Any, ...]] = []
        tail_ok = self._tail_ok
        for r in readings:
            key = (r.device, r.point, r.unit)
            sid = series.get(key)
            if sid is None:
                sid = self._series_id(key)
            v = r.value
            t = type(v)
            if t is int:
                flags = q_code[r.quality]
                if not SQLITE_INT_MIN <= v <= SQLITE_INT_MAX:  # uint64 "not available" = 2**64 - 1 is common
                    v, kind = encode_value(v)  # as JSON text: read back exactly
                    flags |= kind
                    tail_ok = False
            elif v is None or t is str:
                flags = q_code[r.quality]
            elif t is float:
                flags = q_code[r.quality]
                if v != v:  # NaN: SQLite stores NULL, so the tail's object would differ from a read
                    tail_ok = False
            elif t is bool:
                v, flags = int(v), q_code[r.quality] | KIND_BOOL
            else:  # stored encoded (JSON, hex...): readers get the decoded form, not this object
                v, kind = encode_value(v)
                flags = q_code[r.quality] | kind
                tail_ok = False
            seq += 1
            if r.seq:  # appended before (or twice in one list): it keeps its first seq, and the tail (which
                tail_ok = False  # may hold it already) must not see it change, so this row gets no object
            else:
                r.seq = seq
            if r.error is None:
                append((seq, r.ts, sid, v, flags))
            else:
                with_error.append((seq, r.ts, sid, v, flags, r.error))
        try:
            self.con.executemany(INSERT_PLAIN, rows)
            if with_error:
                self.con.executemany(INSERT_WITH_ERROR, with_error)
        except UNSTORABLE:  # one odd value (a str with a lone surrogate...) must not cost the whole batch
            self._insert_one_by_one(rows + with_error)
            tail_ok = False
        self._tail_ok = tail_ok
        self.state.last_seq = seq
        self.count("readings_in", len(readings))
        return len(readings)

    def _insert_one_by_one(self, rows: list[tuple[Any, ...]]) -> None:
        """The rows of one append after executemany refused a value: each stored as it is when it can be, else
        as a bad reading whose error says what the value was (logged), so nothing goes without a trace."""
        first = min(row[0] for row in rows)
        self.con.execute("DELETE FROM readings WHERE seq >= ?", (first,))  # what executemany got in before
        for seq, ts, sid, value, flags, *error in rows:
            text = error[0] if error else None
            try:
                self.con.execute(INSERT_WITH_ERROR, (seq, ts, sid, value, flags, text))
                continue
            except UNSTORABLE:
                if text is not None:  # perhaps only the error text: keep it, escaped
                    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
            try:
                self.con.execute(INSERT_WITH_ERROR, (seq, ts, sid, value, flags, text))
            except UNSTORABLE as e:
                what = ascii(value)[:200]
                log.error("seq %d: value %s cannot be stored (%s); stored as a bad reading", seq, what, e)
                self.con.execute(INSERT_WITH_ERROR, (seq, ts, sid, None, Q_CODE[BAD], f"unstorable value {what}: {e}"))

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
        data_bytes = len(payload) + len(error.encode()) + len(sink.encode())
        self._dead_change(sink, 1, count, dead_letter_footprint(data_bytes, self.page_size))
        return int(cur.lastrowid or 0)

    def _op_delete_dead_letter(self, ident: int) -> bool:
        row = self.con.execute(DEAD_LETTER_ROW_SIZES + " WHERE id = ?", (ident,)).fetchone()
        if row is None:
            return False
        self.con.execute("DELETE FROM dead_letters WHERE id = ?", (ident,))
        _, sink, count, data_bytes = row
        self._dead_change(sink, -1, -count, -dead_letter_footprint(data_bytes, self.page_size))
        return True

    def _dead_change(self, sink: str, batches: int, readings: int, nbytes: int) -> None:
        """Account for dead letters added (or removed: negative) in the current transaction (copy on write:
        the dict readers were given never changes)."""
        dead = dict(self._dead)
        b, r, n = dead.get(sink, (0, 0, 0))
        if b + batches > 0:
            dead[sink] = (b + batches, r + readings, n + nbytes)
        else:
            dead.pop(sink, None)
        self._dead = dead

    def dead_letter_bytes(self) -> int:
        """What the dead letters take in the database file, by the writer's accounting."""
        return sum(n for _, _, n in self._dead.values())

    def _op_count(self, name: str, n: int) -> None:
        self.count(name, n)

    def _op_stall(self, blocker: threading.Event) -> None:
        """Test hook (EDGE_DEBUG_STALL_AFTER): block the writer until the event is set."""
        blocker.wait()

    def _op_maintain(self) -> None:
        """Answered after the commit, once maintenance has run (see _run)."""

    def _op_flush(self) -> int:
        return self.state.last_seq

    def _op_close(self) -> int:
        return self.state.last_seq

    # -- full disk and retention ----------------------------------------------------------------------

    def _has_room(self, batch: list[Command]) -> bool:
        """Whether the batch's readings can be written without the disk running full (cheap: one statvfs)."""
        n = sum(c.readings for c in batch)
        if n == 0:
            return True
        try:
            free = shutil.disk_usage(os.path.dirname(self.spare_path)).free
        except OSError:
            return True
        if self.opt.full_policy == "reject_new" and self._over_max_bytes():
            return False
        return free >= self._low_water() or self._free_pages_bytes() >= self._room_for(n)

    def _over_max_bytes(self) -> bool:
        """reject_new applies at max_bytes too: the live data may not grow past it (drop_oldest drops instead)."""
        return self.readings_bytes() >= self.opt.max_bytes

    def _low_water(self) -> int:
        """FULL_LOW_WATER, plus the spare's size while it is released (the store must not grow into it)."""
        return FULL_LOW_WATER + (0 if self._spare_ok else SPARE_BYTES)

    def _on_full(self, batch: list[Command], why: str, sqlite_full: bool) -> list[Any]:
        """The disk is full: apply full_policy to this batch (every dropped or refused reading is counted).

        drop_oldest deletes the oldest readings until the database file has free pages for the batch, then
        writes it. After SQLITE_FULL each round first releases the spare file and checkpoints the WAL to zero
        bytes, so there is room to write the deletion at all. reject_new, or drop_oldest with nothing left to
        drop, writes the batch without its readings: they get no seq.
        """
        n_readings = sum(c.readings for c in batch)
        if not self.state.full:
            self.state.full = True
            self.full_counts = {"dropped": 0, "rejected": 0}
            log.error("store is full (%s); applying full_policy=%s", why, self.opt.full_policy)
            self._full_event = True
            self._full_why = why
        if self.opt.full_policy == "drop_oldest":
            for _ in range(FULL_DROP_ROUNDS):
                if sqlite_full:
                    self._make_room()
                if self._free_pages_bytes() < self._room_for(n_readings):
                    try:
                        self.full_counts["dropped"] += self._drop_oldest_for_space(n_readings)
                    except sqlite3.OperationalError as e:
                        self._rollback()
                        if not _is_full(e):
                            raise
                        sqlite_full = True  # not even room for the deletion: release the spare, then again
                        continue
                try:
                    results = self._transaction(batch)
                except sqlite3.OperationalError as e:
                    self._rollback()
                    if not _is_full(e):
                        raise
                    sqlite_full = True
                else:
                    self._after_full()
                    return results
        self.full_counts["rejected"] += n_readings
        try:
            results = self._transaction(batch, skip_readings=True)
        except sqlite3.OperationalError as e:
            self._rollback()
            if not _is_full(e):
                raise
            self._make_room()
            try:
                results = self._transaction(batch, skip_readings=True)
            except sqlite3.OperationalError as still:
                self._rollback()
                self.count("rejected_full", n_readings)  # kept in memory, saved with the next commit
                raise StillFull(str(still)) from still
        self._after_full()
        return results

    def _room_for(self, n_readings: int) -> int:
        """Bytes of free database pages to want before writing n readings on a full disk (generous)."""
        rows = self.state.last_seq - self.state.first_seq + 1
        per_row = self.readings_bytes() / rows if rows >= 1000 else ROW_BYTES_GUESS
        return int(2 * n_readings * per_row) + 64 * 1024

    def _free_pages_bytes(self) -> int:
        """Room inside the database file (pages on its freelist) that new rows can use without growing it."""
        return int(self.con.execute("PRAGMA freelist_count").fetchone()[0] * self.page_size)

    def _after_full(self) -> None:
        """After a batch was handled on a full disk: record the event once, try to get the spare back."""
        if self._full_event:
            c = self.full_counts
            self._try_event("store_full", f"store full ({self._full_why}); full_policy={self.opt.full_policy}: "
                                          f"{c['dropped']} oldest readings dropped, {c['rejected']} new readings "
                                          f"refused so far",
                            {"policy": self.opt.full_policy, "why": self._full_why, **c})
        self._restore_spare()

    def _check_space(self) -> None:
        """In maintenance: get the spare back, and leave the full state once the disk has room again."""
        if not self._restore_spare() or not self.state.full:
            return
        try:
            free = shutil.disk_usage(os.path.dirname(self.spare_path)).free
        except OSError:
            return
        over = self.opt.full_policy == "reject_new" and self._over_max_bytes()
        if free >= FULL_CLEAR_FREE + self._low_water() - FULL_LOW_WATER and not over:
            self.state.full = False
            c = self.full_counts
            self._try_event("store_resumed", f"store has room again; while full {c['dropped']} oldest readings "
                                             f"were dropped and {c['rejected']} new readings refused",
                            {"policy": self.opt.full_policy, **c})

    def _make_room(self) -> None:
        """Give back the spare file and empty the WAL, so the checkpoint, drops and events can be written."""
        try:
            os.unlink(self.spare_path)
            log.warning("store full: released the %d-byte spare file", SPARE_BYTES)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.error("could not release the spare file %s: %s", self.spare_path, e)
        self._spare_ok = False
        self._checkpoint()

    def _checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it to zero bytes; False when it could not finish."""
        try:
            busy, _, _ = self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return not busy
        except sqlite3.OperationalError as e:
            log.warning("WAL checkpoint failed: %s", e)
            return False

    def _restore_spare(self) -> bool:
        """Make sure the spare file exists; only created when it leaves FULL_LOW_WATER free (no partial file)."""
        try:
            if os.path.getsize(self.spare_path) >= SPARE_BYTES:
                self._spare_ok = True
                return True
        except OSError:
            pass
        self._spare_ok = False
        try:
            if shutil.disk_usage(os.path.dirname(self.spare_path)).free < SPARE_BYTES + FULL_LOW_WATER:
                return False
            fd = os.open(self.spare_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, SPARE_BYTES)  # glibc writes zeros where fallocate is unsupported
            finally:
                os.close(fd)
            self._spare_ok = True
            return True
        except OSError:
            try:
                os.unlink(self.spare_path)
            except OSError:
                pass
            return False

    def _rollback(self) -> None:
        """After an error: SQLite may already have rolled the transaction back (SQLITE_FULL does)."""
        if self.con.in_transaction:
            self.con.execute("ROLLBACK")

    def _try_save_counters(self, also: Callable[[], Any] | None = None) -> bool:
        """Persist the counters now (and `also`, in the same transaction), outside a batch; on failure they wait
        for the next commit. True when committed."""
        try:
            self.con.execute("BEGIN IMMEDIATE")
            if also is not None:
                also()
            self._save_counters()
            self.con.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            return False
        self._committed_counters()
        return True

    def _try_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        log.warning("%s: %s", kind, message)
        if self._try_save_counters(lambda: self._op_event(time.time(), kind, message, data)):
            self._full_event = False

    def _drop_oldest_for_space(self, n_readings: int) -> int:
        """Delete the oldest readings to make room for n more; returns how many were dropped (counted, logged)."""
        first, last = self.state.first_seq, self.state.last_seq
        if first > last:
            return 0
        held = last - first + 1
        per_row = max(self.readings_bytes() / held, 1.0)
        n = min(held, max(int(self._room_for(n_readings) / per_row) + 1, held // FULL_DROP_FRACTION))
        return self._delete_prefix(first + n - 1, reason="full")

    def _delete_prefix(self, upto: int, reason: str | None) -> int:
        """Delete readings with seq <= upto in one transaction. reason=None means: acknowledged by all."""
        first = self.state.first_seq
        if upto < first:
            return 0
        upto = min(upto, self.state.last_seq)
        n = upto - first + 1
        con = self.con
        before = dict(self.state.counters)
        msg = f"{n} readings dropped by retention ({reason}): seq {first}..{upto}"
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM readings WHERE seq <= ?", (upto,))
            if reason is None:
                self.count("removed_acked", n)
            else:
                self.count(f"dropped_{reason}", n)
                self._op_event(time.time(), "retention_drop", msg,
                               {"reason": reason, "count": n, "first_seq": first, "last_seq": upto})
            self._save_counters()
            con.execute("COMMIT")
            self._committed_counters()
        except BaseException:
            self.state.counters = before  # nothing was dropped: nothing may be counted
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        if reason is not None:
            log.warning(msg)
        self.state.first_seq = upto + 1
        return n

    def _maintain(self) -> None:
        """Remove what every cursor has, then apply max_age, the dead letters' budget and max_bytes."""
        con, opt, st = self.con, self.opt, self.state
        self._check_space()
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
        self._drop_dead_letters()
        used = self.readings_bytes()
        if used > opt.max_bytes and st.first_seq <= st.last_seq and opt.full_policy == "drop_oldest":
            rows = st.last_seq - st.first_seq + 1
            per_row = max(used / rows, 1.0)
            excess = used - int(opt.max_bytes * 0.95)
            n = min(rows, max(1, int(excess / per_row) + 1), opt.gc_chunk)
            self._delete_prefix(st.first_seq + n - 1, "max_bytes")
        ev = con.execute("SELECT max(id) FROM events").fetchone()[0]
        if ev is not None and ev > opt.max_events:
            con.execute("DELETE FROM events WHERE id <= ?", (ev - opt.max_events,))

    def _drop_dead_letters(self) -> int:
        """Delete the oldest dead letters while theirs exceed their budget: counted, logged, one event per pass
        with the id range. Returns how many were dropped."""
        budget = self.opt.dead_letter_budget
        held = self.dead_letter_bytes()
        if held <= budget:
            return 0
        excess = held - int(budget * DEAD_LETTER_LOW_WATER)
        con = self.con
        upto, first, freed, readings = 0, 0, 0, 0
        gone: dict[str, tuple[int, int, int]] = {}
        cur = con.execute(DEAD_LETTER_ROW_SIZES + " ORDER BY id")
        try:
            while freed < min(excess, DEAD_LETTER_DROP_MAX):
                row = cur.fetchone()
                if row is None:
                    break
                ident, sink, count, data_bytes = row
                size = dead_letter_footprint(data_bytes, self.page_size)
                b, r, n = gone.get(sink, (0, 0, 0))
                gone[sink] = (b + 1, r + count, n + size)
                first = first or ident
                upto, freed, readings = ident, freed + size, readings + count
        finally:
            cur.close()
        if not upto:
            return 0
        n = sum(b for b, _, _ in gone.values())
        msg = (f"{n} oldest dead letters ({readings} readings, {freed / 2**20:.1f} MiB) dropped by retention "
               f"(dead_letter_max_bytes, {budget / 2**20:.1f} MiB): id {first}..{upto}")
        data = {"reason": "dead_letter_max_bytes", "count": n, "readings": readings, "bytes": freed,
                "first_id": first, "last_id": upto, "max_bytes": budget,
                "sinks": {sink: b for sink, (b, _, _) in gone.items()}}
        before, saved_dead = dict(self.state.counters), self._dead
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM dead_letters WHERE id <= ?", (upto,))
            self.count("dead_letters_dropped", n)
            self.count("dead_letter_readings_dropped", readings)
            self._op_event(time.time(), "dead_letter_drop", msg, data)
            for sink, (b, r, size) in gone.items():
                self._dead_change(sink, -b, -r, -size)
            self._save_counters()
            con.execute("COMMIT")
            self._committed_counters()
        except BaseException:
            self.state.counters, self._dead = before, saved_dead  # nothing was dropped: nothing is counted
            self._rollback()
            raise
        self.state.dead_letters = self._dead
        log.warning(msg)
        return n

    def used_bytes(self) -> int:
        pages = self.con.execute("PRAGMA page_count").fetchone()[0]
        free = self.con.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self.page_size)

    def readings_bytes(self) -> int:
        """What max_bytes limits: the database's used pages less the dead letters' (they have their own budget)."""
        return max(0, self.used_bytes() - self.dead_letter_bytes())
