"""Booted Debian bookworm containers for the ship tests: a cached mmdebstrap root and systemd-nspawn.

The root filesystem tarball is cached under /var/cache/edge-test/ keyed by a hash of its inputs, so only
the first run pays for mmdebstrap (~20-60 s). Run `python tests/ship/nspawn.py` to build the cache ahead.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

CACHE_DIR = Path(os.environ.get("EDGE_TEST_CACHE", "/var/cache/edge-test"))
SUITE = "bookworm"
VARIANT = "minbase"
INCLUDE = ["systemd", "systemd-sysv", "dbus", "python3", "python3.11", "procps"]
RECIPE_VERSION = 1
MMDEBSTRAP_TIMEOUT_S = 900
BOOT_TIMEOUT_S = 60
EXEC_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30
POLL_INTERVAL_S = 0.25
TOOLS = ["mmdebstrap", "systemd-nspawn", "nsenter", "dpkg-deb"]


def missing_tools() -> list[str]:
    """Return the host tools these containers need that are not installed."""
    return [t for t in TOOLS if shutil.which(t) is None]


def rootfs_key() -> str:
    """Return the cache key: a hash of everything that goes into the root filesystem."""
    version = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True).stdout.strip()
    inputs = {"suite": SUITE, "variant": VARIANT, "include": INCLUDE, "recipe": RECIPE_VERSION,
              "mmdebstrap": version}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def cached_rootfs() -> Path:
    """Return the bookworm root tarball, building it with mmdebstrap when not cached."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tar = CACHE_DIR / f"rootfs-{SUITE}-{rootfs_key()}.tar"
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time across pytest processes
        if tar.exists():
            return tar
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
            out = Path(tmp) / "root.tar"
            env = dict(os.environ, TMPDIR=tmp)
            subprocess.run(["mmdebstrap", "--quiet", f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}",
                            SUITE, str(out)], check=True, env=env, timeout=MMDEBSTRAP_TIMEOUT_S)
            os.replace(out, tar)
    return tar


class Container:
    """A booted systemd-nspawn container on an extracted copy of the cached root (private network)."""

    def __init__(self, root: Path, *, extra_args: tuple[str, ...] = ()):
        self.root = root
        self.extra_args = extra_args
        self.name = f"edge-test-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.gettempdir()) / f"{self.name}.console.log"

    @classmethod
    def extract(cls, tar: Path, workdir: Path) -> Container:
        """Unpack the root tarball into workdir/root."""
        root = workdir / "root"
        root.mkdir()
        subprocess.run(["tar", "-C", str(root), "-xf", str(tar)], check=True)
        return cls(root)

    def boot(self, timeout: float = BOOT_TIMEOUT_S, states: tuple[str, ...] = ("running", "degraded")) -> None:
        """Boot the container and wait until systemd reports one of states (by default: booted)."""
        with open(self.log, "wb") as log:
            self.proc = self._spawn(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"container exited: {self.log.read_text(errors='replace')[-3000:]}")
            if self._init_pid() is not None:
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in states:
                    return
            time.sleep(POLL_INTERVAL_S)
        raise TimeoutError(f"container did not boot in {timeout} s")

    def _spawn(self, log: BinaryIO) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["systemd-nspawn", "-b", "-D", str(self.root), "--register=no", "--keep-unit", "--console=pipe",
             "--private-network", f"--machine={self.name}", *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _init_pid(self) -> int | None:
        """Return the host pid of the container's systemd (the child of systemd-nspawn)."""
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except FileNotFoundError:
            return None
        return int(children[0]) if children else None

    def run(self, *argv: str, check: bool = True, input: str | None = None,
            timeout: float = EXEC_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (its namespaces and root)."""
        pid = self._init_pid()
        if pid is None:
            raise RuntimeError("container is not running")
        return subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", *argv],
                              capture_output=True, text=True, check=check, input=input, timeout=timeout)

    def host_in_netns(self, *argv: str, timeout: float = EXEC_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run a host command inside the container's network namespace only (e.g. the host's Python)."""
        pid = self._init_pid()
        assert pid is not None
        return subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], capture_output=True, text=True,
                              timeout=timeout)

    def stop(self) -> None:
        """Power the container off and clean up nspawn's runtime state."""
        if self.proc is None or self.proc.poll() is not None:
            return
        init = self._init_pid()
        self.proc.send_signal(signal.SIGTERM)  # nspawn turns SIGTERM into an orderly shutdown
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            if init is not None:  # killing the container's init ends its whole pid namespace
                os.kill(init, signal.SIGKILL)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT_S)
        shutil.rmtree(f"/run/systemd/nspawn/unix-export/{self.name}", ignore_errors=True)


if __name__ == "__main__":
    print(cached_rootfs())
