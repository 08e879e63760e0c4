"""A FUSE filesystem that loses every write not yet fsynced when its process is killed: a power cut.

A passthrough to a backing folder, except that write/truncate go to an in-RAM overlay per file; fsync and
fdatasync write that file's overlay to the backing file and os.fsync it. Close and flush are not durability
points; create/unlink/rename/mkdir are applied to the backing folder at once. `kill -9` of this process then
leaves the backing folder holding exactly what was fsynced.

Run: `python lossy_fs.py BACKING MOUNTPOINT` (foreground); from tests use `LossyMount`.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAGE = 4096
MOUNT_TIMEOUT = 10.0  # s for the filesystem to appear


@dataclass
class Overlay:
    """What was written to one file since its last fsync: whole pages, its size, and how much of the backing
    file still shows through (`floor`: below it unchanged bytes come from the backing file, above it zeros)."""

    size: int
    floor: int
    pages: dict[int, bytearray] = field(default_factory=dict)


def _load_fuse() -> Any:
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    import mfusepy

    return mfusepy


class LossyOps:
    """The filesystem operations (mfusepy calls these by name)."""

    use_ns = True

    def __init__(self, backing: str) -> None:
        self.root = os.path.realpath(backing)
        self.overlays: dict[str, Overlay] = {}
        self.guard = threading.RLock()  # not named `lock`: that would shadow the FUSE lock operation
        self.fds: dict[int, int] = {}
        self.next_fh = 1

    def _real(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    # -- the overlay --------------------------------------------------------------------------------------

    def _overlay(self, path: str) -> Overlay:
        ov = self.overlays.get(path)
        if ov is None:
            size = os.path.getsize(self._real(path))
            ov = self.overlays[path] = Overlay(size=size, floor=size)
        return ov

    def _page(self, path: str, ov: Overlay, index: int) -> bytearray:
        page = ov.pages.get(index)
        if page is None:
            page = bytearray(PAGE)
            start = index * PAGE
            if start < ov.floor:
                with open(self._real(path), "rb") as f:
                    f.seek(start)
                    data = f.read(min(PAGE, ov.floor - start))
                page[: len(data)] = data
            ov.pages[index] = page
        return page

    def _sync(self, path: str) -> None:
        ov = self.overlays.pop(path, None)
        real = self._real(path)
        fd = os.open(real, os.O_WRONLY)
        try:
            if ov is not None:
                os.ftruncate(fd, min(ov.floor, ov.size))
                for index in sorted(ov.pages):
                    start = index * PAGE
                    if start < ov.size:
                        os.pwrite(fd, bytes(ov.pages[index][: ov.size - start]), start)
                os.ftruncate(fd, ov.size)
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- files ------------------------------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        with self.guard:
            st = os.lstat(self._real(path))
            attrs = {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino",
                                                 "st_atime_ns", "st_mtime_ns", "st_ctime_ns")}
            for k in ("atime", "mtime", "ctime"):
                attrs[f"st_{k}"] = attrs.pop(f"st_{k}_ns")
            ov = self.overlays.get(path)
            if ov is not None:
                attrs["st_size"] = ov.size
            attrs["st_blocks"] = (attrs["st_size"] + 511) // 512
            return attrs

    def _new_fh(self) -> int:
        fh = self.next_fh
        self.next_fh += 1
        return fh

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        with self.guard:
            os.close(os.open(self._real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode))
            self.overlays[path] = Overlay(size=0, floor=0)
            return self._new_fh()

    def open(self, path: str, flags: int) -> int:
        with self.guard:
            if flags & os.O_TRUNC:
                self.truncate(path, 0)
            return self._new_fh()

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self.guard:
            ov = self.overlays.get(path)
            if ov is None:
                with open(self._real(path), "rb") as f:
                    f.seek(offset)
                    return f.read(size)
            end = min(offset + size, ov.size)
            out = bytearray()
            pos = offset
            while pos < end:
                index, within = divmod(pos, PAGE)
                take = min(PAGE - within, end - pos)
                page = ov.pages.get(index)
                if page is None:  # not kept in the overlay, read through (without caching it)
                    page = self._page(path, ov, index)
                    del ov.pages[index]
                out += page[within: within + take]
                pos += take
            return bytes(out)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self.guard:
            ov = self._overlay(path)
            pos, view = offset, memoryview(data)
            while view:
                index, within = divmod(pos, PAGE)
                take = min(PAGE - within, len(view))
                self._page(path, ov, index)[within: within + take] = view[:take]
                pos += take
                view = view[take:]
            ov.size = max(ov.size, offset + len(data))
            return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self.guard:
            ov = self._overlay(path)
            for index in [i for i in ov.pages if i * PAGE >= length]:
                del ov.pages[index]
            if length % PAGE:
                page = self._page(path, ov, length // PAGE)
                page[length % PAGE:] = bytes(PAGE - length % PAGE)
            ov.floor = min(ov.floor, length)
            ov.size = length
            return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self.guard:
            self._sync(path)
            return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        fd = os.open(self._real(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        return 0

    # -- names and folders: applied to the backing folder at once -------------------------------------------

    def unlink(self, path: str) -> int:
        with self.guard:
            os.unlink(self._real(path))
            self.overlays.pop(path, None)
            return 0

    def rename(self, old: str, new: str) -> int:
        with self.guard:
            os.rename(self._real(old), self._real(new))
            self.overlays.pop(new, None)
            if old in self.overlays:
                self.overlays[new] = self.overlays.pop(old)
            return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._real(path), ns=times) if times else os.utime(self._real(path))
        return 0

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise OSError(errno.EACCES, "")
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        return {k: getattr(st, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                                            "f_files", "f_flag", "f_frsize", "f_namemax")}


def _serve(backing: str, mountpoint: str) -> None:
    mfusepy = _load_fuse()

    class Ops(LossyOps, mfusepy.Operations):  # type: ignore[name-defined]
        pass

    mfusepy.FUSE(Ops(backing), mountpoint, foreground=True, nothreads=True)


class LossyMount:
    """A running lossy filesystem; `cut(app_pid)` is the power cut, `stop()` a clean unmount."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing, self.mountpoint = backing, mountpoint
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LossyMount:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        log = self.backing.with_name(self.backing.name + ".fs.log")
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, __file__, str(self.backing), str(self.mountpoint)],
                                         stdout=out, stderr=out)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"lossy filesystem did not mount on {self.mountpoint}: {log.read_text()[-2000:]}")
            time.sleep(0.01)
        return self

    def cut(self, app_pid: int | None) -> None:
        """Power cut: freeze the app, kill the filesystem (its unsynced writes are gone), kill the app."""
        if app_pid is not None:
            os.kill(app_pid, signal.SIGSTOP)
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        if app_pid is not None:
            os.kill(app_pid, signal.SIGKILL)
        self._umount()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._umount()

    def _umount(self) -> None:
        if os.path.ismount(self.mountpoint) or self._stale():
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, check=False)

    def _stale(self) -> bool:
        try:
            os.stat(self.mountpoint)
            return False
        except OSError as e:
            return e.errno == errno.ENOTCONN


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
