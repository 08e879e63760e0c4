"""The store-and-forward queue: a SQLite file in WAL mode with one writer thread and pooled readers.

Readings get their `seq` from the writer; nothing is readable before the transaction that holds it is
durable (synchronous=FULL commit). Sinks and pull-API consumers read after their own durable cursors.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.reading import Reading
from edge.store.codec import Q_NAME, decode_value
from edge.store.options import StoreOptions
from edge.store.schema import migrate
from edge.store.writer import Command, Writer

log = logging.getLogger("edge.store")

DB_NAME = "store.sqlite"
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
READ_THREADS = 2


class StoreLocked(Exception):
    """Another process has this store open."""


@dataclass(frozen=True)
class Event:
    id: int
    ts: float
    kind: str
    message: str
    data: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        from edge.reading import format_ts

        return {"id": self.id, "ts": format_ts(self.ts), "kind": self.kind, "message": self.message,
                "data": self.data}


@dataclass(frozen=True)
class DeadLetter:
    id: int
    ts: float
    sink: str
    first_seq: int
    last_seq: int
    count: int
    error: str
    payload: bytes

    def to_dict(self, with_payload: bool = False) -> dict[str, Any]:
        from edge.reading import format_ts

        d: dict[str, Any] = {"id": self.id, "ts": format_ts(self.ts), "sink": self.sink,
                             "first_seq": self.first_seq, "last_seq": self.last_seq, "count": self.count,
                             "error": self.error}
        if with_payload:
            d["payload"] = self.payload.decode("utf-8", "replace")
        return d


def _connect(path: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    return con


def _is_corruption(e: sqlite3.DatabaseError) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (SQLITE_CORRUPT, SQLITE_NOTADB)
    text = str(e).lower()
    return "malformed" in text or "not a database" in text


class Store:
    """The durable queue. Create with `Store.open(data_dir, options)`; close with `close()`/`aclose()`."""

    def __init__(self, path: Path, options: StoreOptions, writer: Writer, lock_fd: int,
                 moved_aside: Path | None) -> None:
        self.path = path
        self.options = options
        self._writer = writer
        self._lock_fd = lock_fd
        self.moved_aside = moved_aside
        self._readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="edge-store-read")
        self._local = threading.local()
        self._reader_cons: list[sqlite3.Connection] = []  # every reader connection, closed by close()
        self._reader_cons_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._space = asyncio.Event()
        self._durable_event: asyncio.Event | None = None
        self.durable_seq = writer.state.last_seq
        self._closed = False
        self._close_ok: bool | None = None  # how close() ended (None: not yet, or still at it)
        writer.thread.start()

    # -- opening --------------------------------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str], options: StoreOptions | None = None) -> Store:
        """Open (or create) the store in data_dir; a corrupt file is moved aside and a new one started."""
        options = options or StoreOptions()
        data = Path(data_dir)
        data.mkdir(parents=True, exist_ok=True)
        path = data / DB_NAME
        lock_fd = os.open(data / "store.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise StoreLocked(f"{path} is in use by another process (is another edge running?)") from None
        moved: Path | None = None
        try:
            con = cls._open_checked(path)
        except sqlite3.DatabaseError as e:
            if not _is_corruption(e):
                os.close(lock_fd)
                raise
            moved = cls._move_aside(path)
            log.error("store %s could not be opened (%s); moved aside to %s, starting a new one", path, e, moved)
            con = cls._open_checked(path)
        series: dict[tuple[str, str, str | None], int] = {
            (d, p, u): i for i, d, p, u in con.execute("SELECT id, device, point, unit FROM series")
        }
        holder: dict[str, Store] = {}
        writer = Writer(
            con, options, series, str(data / "seq.reserve"),
            on_commit=lambda seq: holder["store"]._committed(seq),
            on_space=lambda: holder["store"]._space_freed(),
        )
        if moved is not None:
            writer._event_now("store_reset", f"store could not be opened and was moved aside to {moved.name}",
                              {"moved_to": str(moved)})
        store = cls(path, options, writer, lock_fd, moved)
        holder["store"] = store
        return store

    @staticmethod
    def _open_checked(path: Path) -> sqlite3.Connection:
        con = _connect(str(path))
        try:
            migrate(con)
            con.execute("SELECT max(seq) FROM readings").fetchone()
            con.execute("SELECT count(*) FROM series").fetchone()
        except BaseException:
            con.close()
            raise
        return con

    @staticmethod
    def _move_aside(path: Path) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
            n += 1
        os.rename(path, target)
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.rename(side, Path(str(target) + suffix))
        return target

    # -- writer callbacks (writer thread) --------------------------------------------------------------

    def _committed(self, seq: int) -> None:
        self.durable_seq = seq
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake_readers)
            except RuntimeError:
                pass

    def _wake_readers(self) -> None:
        if self._durable_event is not None:
            self._durable_event.set()
            self._durable_event = None

    def _space_freed(self) -> None:
        loop = self._loop
        if loop is not None and self._writer.pending < self.options.max_pending and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._space.set)
            except RuntimeError:
                pass

    # -- writing --------------------------------------------------------------------------------------

    def _bind_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    async def append(self, readings: list[Reading]) -> None:
        """Queue readings (one poll cycle = one call = one transaction). Waits while the writer is behind."""
        if not readings:
            return
        self._bind_loop()
        while self._writer.pending >= self.options.max_pending:
            self._space.clear()
            if self._writer.pending < self.options.max_pending:
                break
            await self._space.wait()
        self._writer.submit(Command("append", (readings,), None, len(readings)))

    def append_nowait(self, readings: list[Reading]) -> None:
        """Queue readings without backpressure (tests, tools, benchmarks driving the store directly)."""
        if readings:
            self._writer.submit(Command("append", (readings,), None, len(readings)))

    def _call(self, op: str, *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self._writer.submit(Command(op, args, fut))
        return fut

    async def _acall(self, op: str, *args: Any) -> Any:
        return await asyncio.wrap_future(self._call(op, *args))

    def flush_sync(self, timeout: float | None = 30.0) -> int:
        """Commit everything queued now; returns the durable seq."""
        return int(self._call("flush").result(timeout))

    async def flush(self) -> int:
        return int(await self._acall("flush"))

    def maintain_sync(self, timeout: float | None = 30.0) -> int:
        """Commit, then remove acknowledged rows and apply retention now; returns the new first seq."""
        return int(self._call("maintain").result(timeout))

    async def set_cursor(self, name: str, seq: int, kind: str = "consumer") -> int:
        """Record that `name` has every reading <= seq (durable when this returns)."""
        return int(await self._acall("cursor", name, kind, seq))

    def set_cursor_sync(self, name: str, seq: int, kind: str = "consumer") -> int:
        return int(self._call("cursor", name, kind, seq).result(30))

    async def register(self, name: str, kind: str, start: int | None = None) -> int:
        """Create a cursor if it does not exist (default: before the oldest retained reading); its seq."""
        return int(await self._acall("register", name, kind, start))

    async def drop_cursor(self, name: str) -> bool:
        return bool(await self._acall("drop_cursor", name))

    async def add_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        """Record an event in the durable event log (and the process log)."""
        log.info("event %s: %s", kind, message)
        self._writer.submit(Command("event", (time.time(), kind, message, data)))

    async def add_dead_letter(self, sink: str, first_seq: int, last_seq: int, count: int, error: str,
                              payload: bytes) -> int:
        return int(await self._acall("dead_letter", sink, first_seq, last_seq, count, error, payload))

    async def delete_dead_letter(self, ident: int) -> bool:
        return bool(await self._acall("delete_dead_letter", ident))

    async def count(self, name: str, n: int = 1) -> None:
        """Add to a persistent counter (shown in stats)."""
        self._writer.submit(Command("count", (name, n)))

    # -- reading --------------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0)
            con.execute("PRAGMA query_only=1")
            self._local.con = con
            with self._reader_cons_lock:
                self._reader_cons.append(con)
        return con

    def _series_name(self, sid: int) -> tuple[str, str, str | None]:
        key = self._writer.series_by_id.get(sid)
        if key is None:
            row = self._reader().execute("SELECT device, point, unit FROM series WHERE id = ?", (sid,)).fetchone()
            key = (row[0], row[1], row[2])
        return key

    def read_sync(self, after: int, limit: int, upto: int | None = None) -> list[Reading]:
        """Durable readings with seq > after, in seq order, at most limit (call from any thread)."""
        bound = self.durable_seq if upto is None else min(upto, self.durable_seq)
        if after >= bound or limit <= 0:
            return []
        recent = self._writer.recent(after, bound, limit)
        if recent is not None:
            return recent
        rows = self._reader().execute(
            "SELECT seq, ts, series, value, flags, error FROM readings WHERE seq > ? AND seq <= ? "
            "ORDER BY seq LIMIT ?",
            (after, bound, limit),
        ).fetchall()
        by_id = self._writer.series_by_id
        out = []
        for seq, ts, sid, value, flags, error in rows:
            key = by_id.get(sid) or self._series_name(sid)
            if flags & 12:
                value = decode_value(value, flags)
            out.append(Reading(key[0], key[1], value, ts, Q_NAME[flags & 3], error, key[2], seq))
        return out

    async def read(self, after: int, limit: int) -> list[Reading]:
        bound = self.durable_seq
        if after < bound and limit > 0:
            recent = self._writer.recent(after, bound, limit)  # the newest readings: no thread hop, no SELECT
            if recent is not None:
                return recent
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_sync, after, limit, None)

    async def run_read(self, fn: Any, *args: Any) -> Any:
        """Run a blocking read function on the reader pool: fn(store, *args)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, fn, self, *args)

    async def wait_for_data(self, after: int, timeout: float | None = None) -> bool:
        """Wait until a reading with seq > after is durable; False on timeout."""
        self._bind_loop()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.durable_seq <= after:
            if self._durable_event is None:
                self._durable_event = asyncio.Event()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):  # not wait_for: on 3.11 it can swallow a cancellation
                    await self._durable_event.wait()
            except TimeoutError:
                return self.durable_seq > after
        return True

    def cursors_sync(self) -> dict[str, dict[str, Any]]:
        rows = self._reader().execute("SELECT name, kind, seq, updated FROM cursors").fetchall()
        return {n: {"kind": k, "seq": s, "updated": u} for n, k, s, u in rows}

    def cursor_sync(self, name: str) -> int | None:
        row = self._reader().execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def events_sync(self, after: int = 0, limit: int = 100, kind: str | None = None) -> list[Event]:
        sql = "SELECT id, ts, kind, message, data FROM events WHERE id > ?"
        params: list[Any] = [after]
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [Event(i, ts, k, m, json.loads(d) if d else None)
                for i, ts, k, m, d in self._reader().execute(sql, params)]

    def dead_letters_sync(self, sink: str | None = None, ident: int | None = None, after: int = 0,
                          limit: int | None = None, payloads: bool = True) -> list[DeadLetter]:
        """Dead letters in id order: id > after, at most limit. Without payloads (a listing), each has b"" for
        its payload: they are whole messages, and thousands pile up while a receiver refuses everything."""
        sql = ("SELECT id, ts, sink, first_seq, last_seq, count, error, "
               + ("payload" if payloads else "x''") + " FROM dead_letters WHERE id > ?")
        params: list[Any] = [after]
        if sink:
            sql += " AND sink = ?"
            params.append(sink)
        if ident is not None:
            sql += " AND id = ?"
            params.append(ident)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [DeadLetter(*row) for row in self._reader().execute(sql, params)]

    @property
    def commits(self) -> int:
        """Transactions committed since the store was opened (a liveness signal)."""
        return self._writer.state.commits

    @property
    def pending(self) -> int:
        """Readings queued for the writer and not yet taken."""
        return self._writer.pending

    def block_writer(self, until: threading.Event) -> None:
        """Test hook (EDGE_DEBUG_STALL_AFTER): the writer stops at its next batch until the event is set."""
        self._writer.submit(Command("stall", (until,)))

    def dead_letter_count_sync(self, sink: str | None = None) -> int:
        """How many dead-lettered batches (of one sink) the store holds: the writer's committed count, no query."""
        dead = self._writer.state.dead_letters
        if sink is None:
            return sum(b for b, _, _ in dead.values())
        return dead.get(sink, (0, 0, 0))[0]

    def dead_letter_totals(self) -> dict[str, int]:
        """The dead letters held: batches, readings, bytes (what they take in the file), and their budget."""
        dead = self._writer.state.dead_letters.values()  # committed totals, kept by the writer: no query
        return {"batches": sum(b for b, _, _ in dead), "readings": sum(r for _, r, _ in dead),
                "bytes": sum(n for _, _, n in dead), "max_bytes": self.options.dead_letter_budget}

    def stats_sync(self) -> dict[str, Any]:
        """Size, seq range, counters and cursor backlogs."""
        st = self._writer.state
        durable = self.durable_seq
        files = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                files += os.path.getsize(str(self.path) + suffix)
            except OSError:
                pass
        first = min(st.first_seq, durable + 1)
        cursors = self.cursors_sync()
        return {
            "path": str(self.path),
            "bytes": files,
            "max_bytes": self.options.max_bytes,
            "readings": max(0, durable - first + 1),
            "first_seq": first,
            "last_seq": durable,
            "pending": self._writer.pending,
            "full": st.full,
            "commits": st.commits,
            "counters": dict(st.counters),
            "dead_letters": self.dead_letter_totals(),
            "cursors": {n: {**c, "backlog": max(0, durable - c["seq"])} for n, c in cursors.items()},
        }

    # -- closing --------------------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> bool:
        """Commit what is queued, stop the writer, close every connection, all within about `timeout`.
        True when the final commit succeeded; False when it failed or is still stuck (then the writer, a
        daemon thread, is left behind: what it did not commit is lost as in a crash, and said so)."""
        if self._closed:
            return bool(self._close_ok)
        self._closed = True
        deadline = time.monotonic() + timeout
        fut: Future[Any] = Future()
        with self._writer.cv:
            self._writer.closing = True
            self._writer.queue.append(Command("close", (), fut))
            self._writer.cv.notify()
        ok = False
        try:
            fut.result(timeout)
            ok = True
        except FutureTimeout:
            log.error("store close: the final commit did not finish within %.1f s; what it held is lost", timeout)
        except Exception:
            log.exception("store close: final commit failed")
        self._writer.thread.join(max(0.0, deadline - time.monotonic()))
        if self._writer.thread.is_alive():  # stuck inside SQLite: its connection cannot be closed under it
            self._close_ok = False
            return False
        self._readers.shutdown(wait=True)
        with self._reader_cons_lock:
            readers, self._reader_cons = self._reader_cons, []
        for con in readers:
            con.close()
        self._writer.con.close()
        os.close(self._lock_fd)
        self._close_ok = ok
        return ok

    async def aclose(self, timeout: float = 10.0) -> bool:
        """close() on a thread of its own (not the loop's executor: a writer stuck in SQLite must not keep
        asyncio.run from returning); the result of close()."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()

        def run() -> None:
            try:
                ok = self.close(timeout)
            except BaseException:
                log.exception("store close failed")
                ok = False
            def settle() -> None:
                if not done.done():
                    done.set_result(ok)

            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(settle)

        threading.Thread(target=run, name="edge-store-close", daemon=True).start()
        return await done
