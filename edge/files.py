"""Files written whole or not at all: temporary file, fsync, rename, fsync of the folder; owner kept under sudo.

Kept apart from edge.identity so that writing a file does not load cryptography.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def _chown_like(path: Path, reference: Path) -> None:
    """As root, give path the owner of reference (so `sudo edge ...` leaves files the daemon can read)."""
    if os.geteuid() != 0:
        return
    try:
        st = reference.stat()
    except FileNotFoundError:
        return
    if st.st_uid != 0 or st.st_gid != 0:
        os.chown(path, st.st_uid, st.st_gid)


def write_private(path: Path, data: bytes, *, owner_like: Path | None = None,
                  mode: int = PRIVATE_FILE_MODE) -> None:
    """Write data to path atomically (temp file, fsync, rename) with mode 0600 and a 0700 folder.

    When run as root and owner_like (usually the data dir) belongs to another user, the new file and
    folder are given to that user.
    """
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True)
        if owner_like is not None:
            _chown_like(parent, owner_like)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if owner_like is not None:
            _chown_like(Path(tmp), owner_like)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
