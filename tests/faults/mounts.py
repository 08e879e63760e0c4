"""Mounts for fault tests: a size-limited tmpfs (a disk that fills up), mounted and always unmounted."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MiB = 1024 * 1024


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


def umount(path: Path) -> None:
    """Unmount, lazily if something still holds it (a killed process's files)."""
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes at path; skips the test when mounting is impossible (not root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the fault tests run as root in CI)")
    path.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        umount(path)


def resize_tmpfs(path: Path, size: int) -> None:
    """Give the tmpfs more (or less) room without touching its files: 'space frees'."""
    done = _mount("-o", f"remount,size={size}", str(path))
    if done.returncode != 0:
        raise RuntimeError(f"remount of {path} failed: {done.stderr.strip()}")


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
