"""The .deb in a booted Debian bookworm container: install, Type=notify start, pull API, watchdog, clean stop.

Slow (~1-2 min; the first run also builds the cached root filesystem). Needs root, mmdebstrap,
systemd-container and dpkg-dev. The tests run in file order on one container.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .nspawn import Container, cached_rootfs, missing_tools

REPO = Path(__file__).resolve().parents[2]
API = "http://127.0.0.1:8470"
ACTIVE_TIMEOUT_S = 120
RESTART_TIMEOUT_S = 90
READINGS_TIMEOUT_S = 30
BUILD_TIMEOUT_S = 900
HTTP_TIMEOUT_S = 5
POLL_S = 0.5
# The daemon's test hook: this many seconds after start-up its pipeline stops making progress.
STALL_ENV = "EDGE_DEBUG_STALL_AFTER"
TEST_WATCHDOG_S = 6
TEST_STALL_AFTER_S = 3

CONFIG = """\
[edge]
id = "nspawn-test"
data_dir = "/var/lib/edge"

[api]
listen = "127.0.0.1:8470"

[discovery]
advertise = false

[[device]]
name = "sim1"
driver = "simulator"
interval = "200ms"
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(BUILD_TIMEOUT_S + 600),  # the first test also pays for the .deb and the root
    pytest.mark.skipif(os.geteuid() != 0, reason="systemd-nspawn needs root"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]


def _daemon_source() -> str:
    return "".join(p.read_text() for p in (REPO / "edge").glob("*.py") if p.name != "sdnotify.py")


def _require_notify() -> None:
    """Skip (not fail) until the daemon sends READY=1: a Type=notify unit never becomes active without it."""
    if "sdnotify" not in _daemon_source():
        pytest.skip("the daemon does not send sd_notify READY=1 yet (edge.sdnotify.notify)")


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """A booted bookworm container with the freshly built edge .deb installed (and so started)."""
    work = tmp_path_factory.mktemp("nspawn")
    build = subprocess.run([str(REPO / "image" / "build-deb"), "--out", str(work)], capture_output=True,
                           text=True, timeout=BUILD_TIMEOUT_S)
    assert build.returncode == 0, build.stderr[-3000:]
    deb = Path(build.stdout.strip().splitlines()[-1])
    c = Container.extract(cached_rootfs(), work)
    (c.root / "root" / deb.name).write_bytes(deb.read_bytes())  # /tmp is a tmpfs once booted
    c.boot()
    try:
        c.install_log = c.run("dpkg", "-i", f"/root/{deb.name}", check=False)  # type: ignore[attr-defined]
        yield c
    finally:
        c.stop()


def _show(c: Container, prop: str) -> str:
    return c.run("systemctl", "show", "edge.service", "-p", prop, "--value", check=False).stdout.strip()


def _wait_active(c: Container, timeout: float = ACTIVE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = c.run("systemctl", "is-active", "edge.service", check=False).stdout.strip()
        if state == "active":
            return
        time.sleep(POLL_S)
    journal = c.run("journalctl", "-u", "edge", "--no-pager", "-n", "60", check=False).stdout
    raise AssertionError(f"edge.service is {state!r} after {timeout} s:\n{journal}")


def _get(c: Container, path: str) -> tuple[int, dict[str, object]]:
    """GET path from the API inside the container's network namespace (with the host's Python)."""
    code = (
        "import json,sys,urllib.request,urllib.error\n"
        f"try: r = urllib.request.urlopen({API + path!r}, timeout={HTTP_TIMEOUT_S}); print(r.status); "
        "print(r.read().decode())\n"
        "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode())\n"
    )
    r = c.host_in_netns(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    status, _, body = r.stdout.partition("\n")
    return int(status), json.loads(body)


def _use_config(c: Container, text: str, dropin: str | None) -> None:
    (c.root / "etc/edge/edge.toml").write_text(text)
    d = c.root / "etc/systemd/system/edge.service.d"
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "test.conf"
    if dropin is None:
        conf.unlink(missing_ok=True)
    else:
        conf.write_text(dropin)
    c.run("systemctl", "daemon-reload")
    # Blocking: with Type=notify this returns once the new daemon sent READY=1 (never the old one's state).
    c.run("systemctl", "restart", "edge.service", check=False)


def _store(c: Container) -> Path:
    return c.root / "var/lib/edge/store.sqlite"


def _count_readings(c: Container) -> tuple[int, int]:
    con = sqlite3.connect(f"file:{_store(c)}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n, top = con.execute("SELECT count(*), coalesce(max(seq), 0) FROM readings").fetchone()
        return int(n), int(top)
    finally:
        con.close()


def test_deb_installs_and_the_service_becomes_active_through_notify(box: Container) -> None:
    assert box.install_log.returncode == 0, box.install_log.stdout + box.install_log.stderr  # type: ignore[attr-defined]
    _require_notify()
    _wait_active(box)
    assert _show(box, "Type") == "notify"
    assert _show(box, "NRestarts") == "0"
    assert box.run("/usr/bin/edge", "--version").stdout.strip().endswith(
        __import__("edge").__version__)
    # The units verify on the real install, too, without a word on stderr.
    r = box.run("systemd-analyze", "verify", "/lib/systemd/system/edge.service",
                "/lib/systemd/system/edge-firstboot.service", check=False)
    assert (r.returncode, r.stderr) == (0, "")


def test_first_boot_made_keys_and_a_unique_id(box: Container) -> None:
    keys = box.root / "var/lib/edge/keys"
    key = keys / "signing.key"
    assert key.exists()
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    uid = int(box.run("id", "-u", "edge").stdout)
    assert key.stat().st_uid == uid
    config = (box.root / "etc/edge/edge.toml").read_text()
    assert 'id = "edge-' in config
    log = box.run("journalctl", "-u", "edge-firstboot", "--no-pager", check=False).stdout
    assert "edge tui" in log
    groups = box.run("id", "-nG", "edge").stdout.split()
    assert {"edge", "dialout", "bluetooth"} <= set(groups)
    # No device filter: USB serial adapters plugged in later stay reachable.
    assert _show(box, "DevicePolicy") == "auto" and _show(box, "DeviceAllow") == ""


def test_daemon_serves_the_pull_api(box: Container) -> None:
    _require_notify()
    _use_config(box, CONFIG, None)
    _wait_active(box)
    deadline = time.monotonic() + READINGS_TIMEOUT_S
    while True:
        try:
            status, body = _get(box, "/v1/health")
            break
        except (AssertionError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_S)
    assert status == 200 and body["status"] == "ok" and body["edge"] == "nspawn-test"
    status, body = _get(box, "/v1/readings")
    assert status == 401  # every endpoint but health wants the token


def _token(c: Container) -> str:
    lines = (c.root / "var/lib/edge/tokens").read_text().splitlines()
    return next(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def test_signed_pages_verify_with_the_appliances_public_key(box: Container) -> None:
    """[api] sign = true: a central system checks a pulled page with the key `edge keys show` prints."""
    _require_notify()
    _use_config(box, CONFIG.replace("[api]\n", "[api]\nsign = true\n"), None)
    _wait_active(box)
    public = json.loads(box.run("/usr/bin/edge", "keys", "show", "--json").stdout)["public_key"]
    code = (
        "import sys,urllib.request\n"
        f"req = urllib.request.Request({API + '/v1/readings?after=0&limit=50'!r}, "
        "headers={'Authorization': 'Bearer ' + sys.argv[1]})\n"
        f"print(urllib.request.urlopen(req, timeout={HTTP_TIMEOUT_S}).read().decode())\n"
    )
    deadline = time.monotonic() + READINGS_TIMEOUT_S
    while True:
        r = box.host_in_netns(sys.executable, "-c", code, _token(box))
        page = json.loads(r.stdout) if r.returncode == 0 else {}
        if page.get("readings"):
            break
        assert time.monotonic() < deadline, r.stderr or r.stdout
        time.sleep(POLL_S)
    assert page["sig"]["alg"] == "ed25519"
    from edge.signing import verify_payload

    assert verify_payload(page, public)
    ok = box.run("/usr/bin/edge", "verify", "--key", public, input=json.dumps(page), check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    page["readings"][0]["seq"] += 1
    bad = box.run("/usr/bin/edge", "verify", "--key", public, input=json.dumps(page), check=False)
    assert bad.returncode == 1 and "INVALID" in bad.stderr


SINK_WITH_SECRET = """
[[sink]]
name = "cloud"
type = "mqtt"
url = "mqtt://127.0.0.1:1883"
username = "site"
password = "secret:mqtt"
"""


def test_the_config_can_be_edited_through_the_api_on_an_installed_appliance(box: Container) -> None:
    """PUT /v1/config (the TUI's editor) replaces /etc/edge/edge.toml and keeps the .bak, under the unit's
    sandbox (ProtectSystem=strict) as the user edge."""
    _require_notify()
    _use_config(box, CONFIG, None)
    _wait_active(box)
    new_text = CONFIG.replace('[edge]\n', '[edge]\n# edited through the API\n', 1)
    code = (
        "import json,sys,urllib.request,urllib.error\n"
        f"req = urllib.request.Request({API + '/v1/config'!r}, method='PUT', "
        f"data=json.dumps({{'text': {new_text!r}}}).encode(), "
        f"headers={{'Authorization': 'Bearer {_token(box)}', 'Content-Type': 'application/json'}})\n"
        f"try: r = urllib.request.urlopen(req, timeout={HTTP_TIMEOUT_S}); print(r.status, r.read().decode())\n"
        "except urllib.error.HTTPError as e: print(e.code, e.read().decode())\n"
    )
    r = box.host_in_netns(sys.executable, "-c", code)
    assert r.stdout.startswith("200 "), r.stdout + r.stderr
    assert (box.root / "etc/edge/edge.toml").read_text() == new_text
    assert (box.root / "etc/edge/edge.toml.bak").read_text() == CONFIG


def test_a_secret_set_by_root_is_read_by_the_service(box: Container) -> None:
    """`sudo edge secrets set` on the appliance; the daemon (user edge) decrypts it, the disk has no clear text."""
    _require_notify()
    _use_config(box, CONFIG + SINK_WITH_SECRET, None)
    assert box.run("systemctl", "is-active", "edge.service", check=False).stdout.strip() != "active"
    journal = box.run("journalctl", "-u", "edge", "--no-pager", "-n", "30", check=False).stdout
    assert "secret:mqtt" in journal and "edge secrets set mqtt" in journal
    password = "correct-horse-battery-staple"
    r = box.run("/usr/bin/edge", "secrets", "set", "mqtt", input=password + "\n", check=False)
    assert r.returncode == 0, r.stderr
    uid = int(box.run("id", "-u", "edge").stdout)
    for name in ("secrets.json", "secrets.key"):
        f = box.root / "var/lib/edge" / name
        assert f.stat().st_uid == uid and password.encode() not in f.read_bytes()
    box.run("systemctl", "restart", "edge.service", check=False)
    _wait_active(box)


def test_stalled_pipeline_is_restarted_by_the_watchdog(box: Container) -> None:
    _require_notify()
    if STALL_ENV not in _daemon_source():
        pytest.skip(f"the daemon has no {STALL_ENV} test hook yet")
    dropin = f"[Service]\nWatchdogSec={TEST_WATCHDOG_S}s\nEnvironment={STALL_ENV}={TEST_STALL_AFTER_S}\n"
    _use_config(box, CONFIG, dropin)
    _wait_active(box)
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while int(_show(box, "NRestarts") or 0) < 1:
        assert time.monotonic() < deadline, "the stalled daemon was not restarted"
        time.sleep(POLL_S)
    journal = box.run("journalctl", "-u", "edge", "--no-pager", check=False).stdout
    assert "Watchdog timeout" in journal or "watchdog" in journal.lower()
    assert "Fatal Python error: Aborted" in journal, "no thread stacks (faulthandler) on the watchdog's SIGABRT"
    _wait_active(box)  # and it came back


def test_stop_leaves_the_store_intact(box: Container) -> None:
    _require_notify()
    _use_config(box, CONFIG, None)
    _wait_active(box)
    deadline = time.monotonic() + READINGS_TIMEOUT_S
    while not _store(box).exists() or _count_readings(box)[0] == 0:
        assert time.monotonic() < deadline, "no readings were stored"
        time.sleep(POLL_S)
    box.run("systemctl", "stop", "edge.service")
    assert box.run("systemctl", "is-active", "edge.service", check=False).stdout.strip() == "inactive"
    assert _show(box, "Result") == "success"
    n, top = _count_readings(box)
    assert n > 0 and top >= n
    # It starts again on the same store and goes on numbering after the last seq.
    box.run("systemctl", "start", "edge.service", check=False)
    _wait_active(box)
    deadline = time.monotonic() + READINGS_TIMEOUT_S
    while _count_readings(box)[1] <= top:
        assert time.monotonic() < deadline, "no new readings after the restart"
        time.sleep(POLL_S)
    box.run("systemctl", "stop", "edge.service")
    assert _count_readings(box)[1] > top
