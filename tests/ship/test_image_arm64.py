"""The Raspberry Pi image: `image/build` makes an SD image with a FAT boot and an ext4 root partition.

Runs only with EDGE_TEST_IMAGE=1 (several minutes: arm64 root under qemu). The build itself fails unless
`edge --version` runs inside the arm64 root. Reuse an image already built with EDGE_TEST_IMAGE_PATH=FILE.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 3600
STOP_TIMEOUT_S = 60
TOOL_TIMEOUT_S = 120
SECTOR = 512
MBR_TABLE_OFFSET = 446
MBR_ENTRY_SIZE = 16
FAT32_LBA = 0x0C
LINUX = 0x83
BOOTABLE = 0x80

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(BUILD_TIMEOUT_S + 900),  # the first test also pays for the build
    pytest.mark.skipif(os.environ.get("EDGE_TEST_IMAGE") != "1",
                       reason="set EDGE_TEST_IMAGE=1 to build the arm64 image (several minutes)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="image/build needs root"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("mmdebstrap", "genimage", "mtype", "debugfs")),
                       reason="image tools missing (mmdebstrap genimage mtools e2fsprogs)"),
]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("EDGE_TEST_IMAGE_PATH")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("image")
    proc = subprocess.Popen([str(REPO / "image" / "build"), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=BUILD_TIMEOUT_S)
    finally:
        if proc.poll() is None:  # timed out or interrupted: TERM lets image/build clean up its mounts
            proc.terminate()
            proc.wait(STOP_TIMEOUT_S)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return Path(stdout.strip().splitlines()[-1])


def _partitions(image: Path) -> list[tuple[int, int, int, int]]:
    """Return (boot flag, type, first sector, sectors) of the MBR's used entries."""
    with image.open("rb") as f:
        mbr = f.read(SECTOR)
    assert mbr[510:512] == b"\x55\xaa"
    parts = []
    for i in range(4):
        e = mbr[MBR_TABLE_OFFSET + i * MBR_ENTRY_SIZE: MBR_TABLE_OFFSET + (i + 1) * MBR_ENTRY_SIZE]
        flag, ptype, start, count = e[0], e[4], *struct.unpack("<II", e[8:16])
        if ptype:
            parts.append((flag, ptype, start, count))
    return parts


def _run(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    assert r.returncode == 0, f"{argv}: {r.stderr}"
    return r.stdout


def test_image_has_a_fat_boot_and_an_ext4_root_partition(image: Path) -> None:
    (boot_flag, boot_type, _, _), (_, root_type, _, _) = _partitions(image)
    assert (boot_flag, boot_type, root_type) == (BOOTABLE, FAT32_LBA, LINUX)


def test_boot_partition_holds_firmware_kernel_and_the_root_on_the_command_line(image: Path) -> None:
    _, _, start, _ = _partitions(image)[0]
    fat = f"{image}@@{start * SECTOR}"
    listing = _run("mdir", "-b", "-i", fat, "::/")
    names = {line.rsplit("/", 1)[-1].lower() for line in listing.split()}
    assert {"config.txt", "cmdline.txt", "start4.elf"} <= names
    assert any(n.startswith("vmlinuz") for n in names) and any(n.startswith("initrd") for n in names)
    assert "root=LABEL=RASPIROOT" in _run("mtype", "-i", fat, "::/cmdline.txt")
    assert "RASPIFIRM" in _run("mlabel", "-s", "-i", fat, "::")


def test_root_partition_has_edge_installed_and_enabled(image: Path, tmp_path: Path) -> None:
    _, _, start, count = _partitions(image)[1]
    part = tmp_path / "root.ext4"
    _run("dd", f"if={image}", f"of={part}", f"bs={SECTOR}", f"skip={start}", f"count={count}", "conv=sparse",
         "status=none")
    assert _run("e2label", str(part)).strip() == "RASPIROOT"

    def debugfs(request: str) -> str:
        return _run("debugfs", "-R", request, str(part))

    assert "Type: regular" in debugfs("stat /opt/edge/venv/bin/edge")
    assert "edge.service" in debugfs("ls -l /etc/systemd/system/multi-user.target.wants")
    assert "edge" in debugfs("cat /etc/passwd")
    assert debugfs("cat /etc/machine-id").strip() == ""
    assert "LABEL=RASPIFIRM" in debugfs("cat /etc/fstab")
    assert "ssh_host_" not in debugfs("ls /etc/ssh")


ARM64_BOOT_TIMEOUT_S = 600
ARM64_ACTIVE_TIMEOUT_S = 600
POLL_S = 2.0


def test_image_boots_under_qemu_and_edge_runs(image: Path, tmp_path: Path) -> None:
    """Boot the image's root in systemd-nspawn (aarch64 through qemu-user, read-only root with a tmpfs
    overlay): first boot makes the id, keys and SSH host keys, and edge.service becomes active."""
    import json
    import sys
    import time

    from .nspawn import Container

    _, _, start, _ = _partitions(image)[1]
    mnt = tmp_path / "root"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-o", f"loop,ro,offset={start * SECTOR}", str(image), str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount the root partition: {mounted.stderr.strip()}")
    box = Container(mnt, extra_args=("--volatile=overlay",))
    try:
        box.boot(ARM64_BOOT_TIMEOUT_S, states=("starting", "running", "degraded"))
        deadline = time.monotonic() + ARM64_ACTIVE_TIMEOUT_S
        while box.run("systemctl", "is-active", "edge.service", check=False).stdout.strip() != "active":
            assert time.monotonic() < deadline, box.run("journalctl", "-u", "edge", "-u", "edge-firstboot",
                                                         "--no-pager", check=False).stdout[-4000:]
            time.sleep(POLL_S)
        assert box.run("systemctl", "is-active", "edge-firstboot.service", check=False).stdout.strip() == "active"
        assert box.run("systemctl", "is-active", "ssh.service", check=False).stdout.strip() == "active"
        assert 'id = "edge-' in box.run("cat", "/etc/edge/edge.toml").stdout
        assert "signing.key" in box.run("ls", "/var/lib/edge/keys").stdout
        code = ("import json,urllib.request; print(urllib.request.urlopen("
                "'http://127.0.0.1:8470/v1/health', timeout=30).read().decode())")
        health = box.host_in_netns(sys.executable, "-c", code)
        assert health.returncode == 0, health.stderr
        assert json.loads(health.stdout)["status"] == "ok"
    finally:
        box.stop()
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
