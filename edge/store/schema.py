"""The store's SQLite schema, versioned with PRAGMA user_version, and the migrations between versions."""

from __future__ import annotations

import sqlite3

# Each entry upgrades from version i to i+1. Never edit a released step: append a new one.
MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        point TEXT NOT NULL,
        unit TEXT,
        UNIQUE (device, point, unit)
    );
    -- value has no declared type on purpose: SQLite keeps int, float, text and NULL as given.
    -- flags = quality (bits 0-1: 0 good, 1 uncertain, 2 bad) | kind << 2 (0 plain, 1 bool, 2 json).
    CREATE TABLE readings (
        seq INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        series INTEGER NOT NULL,
        value,
        flags INTEGER NOT NULL,
        error TEXT
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE cursors (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,            -- 'sink' | 'consumer'
        seq INTEGER NOT NULL,
        updated REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT
    );
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        sink TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        count INTEGER NOT NULL,
        error TEXT NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta VALUES ('last_seq', 0);
    """,
]

VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The store was written by a newer edge; refuse rather than damage it."""


def migrate(con: sqlite3.Connection) -> int:
    """Bring the schema to VERSION; returns the version found before. Each step is one transaction."""
    found: int = con.execute("PRAGMA user_version").fetchone()[0]
    if found > VERSION:
        raise SchemaTooNew(f"store schema version {found} is newer than this edge understands ({VERSION})")
    for version in range(found, VERSION):
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    con.execute(statement)
            con.execute(f"PRAGMA user_version = {version + 1}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return found
