"""The pull API and admin API against a real daemon: every endpoint, auth failures, bad parameters."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from edgeproc import EdgeProcess, wait_until, write_config

CONFIG = """
[[device]]
name = "sim"
driver = "simulator"
interval = "50ms"
  [[device.point]]
  name = "temp"
  signal = "sine"
  scale = 2.0
  unit = "degC"
  [[device.point]]
  name = "setpoint"
  signal = "constant"
  center = 5.0
  writable = true
  [[device.point]]
  name = "flag"
  signal = "bool"
"""


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    proc = EdgeProcess(write_config(tmp_path_factory.mktemp("api"), CONFIG)).start()
    yield proc
    assert proc.stop() == 0


def status_of(edge: EdgeProcess, method: str, path: str, body: Any = None, token: str | None = None,
              raw: bytes | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(edge.url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token if token is not None else edge.token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


def test_health_needs_no_token(edge: EdgeProcess) -> None:
    assert edge.get("/v1/health", auth=False) == {"status": "ok", "edge": "test", "version": "0.1.0"}


@pytest.mark.parametrize("path", ["/v1/readings", "/v1/devices", "/v1/stats", "/v1/events", "/v1/cursors",
                                  "/v1/dead-letters", "/metrics", "/v1/config"])
def test_every_other_endpoint_needs_the_token(edge: EdgeProcess, path: str) -> None:
    for token in ("", "wrong", edge.token + "x"):
        code, body, headers = status_of(edge, "GET", path, token=token)
        assert code == 401 and "token" in body["error"] and headers["WWW-Authenticate"] == "Bearer"


def test_readings_pages_are_contiguous_and_in_order(edge: EdgeProcess) -> None:
    wait_until(lambda: edge.get("/v1/readings?limit=50")["next"] >= 40)
    after, seqs = 0, []
    for _ in range(4):
        page = edge.get(f"/v1/readings?after={after}&limit=10")
        assert page["edge"] == "test"
        seqs += [r["seq"] for r in page["readings"]]
        assert page["next"] == (page["readings"][-1]["seq"] if page["readings"] else after)
        after = page["next"]
    assert seqs == list(range(1, 41))
    first = edge.get("/v1/readings?after=0&limit=3")["readings"][0]
    assert set(first) >= {"seq", "device", "point", "ts", "value", "quality"}
    assert first["ts"].endswith("Z") and len(first["ts"]) == 24
    temps = [r for r in edge.get("/v1/readings?limit=100")["readings"] if r["point"] == "temp"]
    assert temps[0]["unit"] == "degC" and -2.0 <= temps[0]["value"] <= 2.0  # sine amplitude 1, scale 2
    flags = [r for r in edge.get("/v1/readings?limit=100")["readings"] if r["point"] == "flag"]
    assert isinstance(flags[0]["value"], bool)


def test_readings_after_the_newest_is_an_empty_page(edge: EdgeProcess) -> None:
    page = edge.get("/v1/readings?after=999999999&limit=5")
    assert page == {"edge": "test", "readings": [], "next": 999999999}


@pytest.mark.parametrize(("query", "parameter"), [
    ("after=-1", "after"), ("after=abc", "after"), ("after=1.5", "after"),
    ("limit=0", "limit"), ("limit=10001", "limit"), ("limit=x", "limit"),
    ("after=%2B1", "after"), ("after=%201", "after"), ("after=1_0", "after"), ("limit=%D9%A3", "limit"),
])
def test_bad_parameters_are_named(edge: EdgeProcess, query: str, parameter: str) -> None:
    code, body, _ = status_of(edge, "GET", f"/v1/readings?{query}")
    assert code == 400 and body["parameter"] == parameter and body["error"].startswith(parameter)


def test_consumer_cursor_registers_acks_and_releases(edge: EdgeProcess) -> None:
    wait_until(lambda: edge.get("/v1/readings?limit=1")["next"] >= 1)
    newest = edge.get("/v1/stats")["store"]["last_seq"]
    ack = newest // 2
    code, body, _ = status_of(edge, "PUT", "/v1/cursors/central", {"seq": ack})
    assert (code, body) == (200, {"consumer": "central", "seq": ack})
    cursors = {c["name"]: c for c in edge.get("/v1/cursors")["cursors"]}
    assert cursors["central"]["kind"] == "consumer" and cursors["central"]["seq"] == ack
    # Rows every cursor has are removed by the next maintenance pass: they are not served again.
    wait_until(lambda: edge.get("/v1/readings?after=0&limit=1")["readings"][0]["seq"] == ack + 1)
    assert edge.get("/v1/stats")["consumers"]["central"]["backlog"] >= newest - ack
    code, body, _ = status_of(edge, "PUT", "/v1/cursors/central", {"seq": 10**12})
    assert code == 409 and body["parameter"] == "seq"
    for bad in ({"seq": -1}, {"seq": "1"}, {"seq": True}, {}, [1]):
        code, body, _ = status_of(edge, "PUT", "/v1/cursors/central", bad)
        assert code == 400, bad
    code, body, _ = status_of(edge, "PUT", "/v1/cursors/central", raw=b"{not json")
    assert code == 400 and body["parameter"] == "body"
    code, body, _ = status_of(edge, "PUT", "/v1/cursors/bad%20name", {"seq": 1})
    assert code == 400 and body["parameter"] == "consumer"
    code, body, _ = status_of(edge, "PUT", "/v1/cursors/central%0A", {"seq": 1})  # "$" matches before a newline
    assert code == 400 and body["parameter"] == "consumer"
    for raw in (b"[" * 30_000 + b"]" * 30_000, "{\"seq\": 1}".encode("utf-16")):
        code, body, _ = status_of(edge, "PUT", "/v1/cursors/central", raw=raw)
        assert code == 400 and body["parameter"] == "body"
    assert status_of(edge, "DELETE", "/v1/cursors/central")[0] == 200
    assert status_of(edge, "DELETE", "/v1/cursors/central")[0] == 404


def test_odd_authorization_headers(edge: EdgeProcess) -> None:
    """The scheme is case-insensitive; bytes that are not UTF-8 are a wrong token (401), not a crash (500)."""
    with socket.create_connection((edge.url.split("//")[1].split(":")[0], int(edge.url.rsplit(":", 1)[1]))) as s:
        s.sendall(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
    req = urllib.request.Request(edge.url + "/v1/stats")
    req.add_header("Authorization", f"bearer {edge.token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def test_body_size_is_limited(edge: EdgeProcess) -> None:
    code, body, _ = status_of(edge, "PUT", "/v1/cursors/big", raw=b'{"seq": 1, "pad": "' + b"x" * 200_000 + b'"}')
    assert code == 413 and "body" in body["error"]


def test_devices_show_status_and_latest_values(edge: EdgeProcess) -> None:
    dev = wait_until(lambda: [d for d in edge.get("/v1/devices")["devices"] if d["status"]["polls"] > 2])[0]
    assert dev["name"] == "sim" and dev["driver"] == "simulator" and dev["status"]["state"] == "up"
    assert set(dev["points"]) == {"temp", "setpoint", "flag"}
    assert dev["points"]["temp"]["unit"] == "degC" and dev["points"]["temp"]["quality"] == "good"


def test_write_point_reads_back_and_is_audited(edge: EdgeProcess) -> None:
    code, body, _ = status_of(edge, "POST", "/v1/devices/sim/points/setpoint", {"value": 7.5})
    assert (code, body["read_back"]) == (200, 7.5)
    wait_until(lambda: any(r["point"] == "setpoint" and r["value"] == 7.5
                         for r in edge.get("/v1/readings?after=0&limit=10000")["readings"]))
    events = edge.get("/v1/events?kind=write")["events"]
    assert events and "sim/setpoint = 7.5" in events[-1]["message"]
    assert status_of(edge, "POST", "/v1/devices/sim/points/temp", {"value": 1})[0] == 403
    assert status_of(edge, "POST", "/v1/devices/sim/points/nope", {"value": 1})[0] == 404
    assert status_of(edge, "POST", "/v1/devices/nope/points/setpoint", {"value": 1})[0] == 404
    code, body, _ = status_of(edge, "POST", "/v1/devices/sim/points/setpoint", {"value": [1]})
    assert code == 400 and body["parameter"] == "value"
    assert status_of(edge, "POST", "/v1/devices/sim/points/setpoint", {})[0] == 400


def test_write_through_the_cli(edge: EdgeProcess) -> None:
    run = subprocess.run([sys.executable, "-m", "edge", "write", "-c", str(edge.config), "sim", "setpoint", "9"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "sim/setpoint = 9 (read back 9.0)" in run.stdout
    run = subprocess.run([sys.executable, "-m", "edge", "write", "-c", str(edge.config), "sim", "temp", "1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "not writable" in run.stderr


def test_stats_metrics_events_dead_letters(edge: EdgeProcess) -> None:
    stats = wait_until(lambda: (s := edge.get("/v1/stats"))["store"]["last_seq"] > 0 and s)
    assert stats["store"]["last_seq"] > 0 and stats["devices"]["sim"]["state"] == "up"
    assert stats["dead_letters"] == {"batches": 0, "readings": 0, "bytes": 0, "max_bytes": 1024**3 // 10}
    metrics = edge.get("/metrics")
    assert "edge_readings_in_total" in metrics and 'edge_device_polls_total{device="sim"}' in metrics
    assert "edge_dead_letters_dropped_total 0.0" in metrics and "edge_dead_letter_max_bytes 1.07374182e+08" in metrics
    assert [e["kind"] for e in edge.get("/v1/events?limit=1")["events"]] == ["started"]
    assert edge.get("/v1/dead-letters") == {"dead_letters": [], "next": 0}
    assert status_of(edge, "GET", "/v1/dead-letters?limit=0")[0] == 400
    assert status_of(edge, "POST", "/v1/dead-letters/5/replay")[0] == 404
    assert status_of(edge, "POST", "/v1/dead-letters/x/replay")[0] == 400
    assert status_of(edge, "DELETE", "/v1/dead-letters/5")[0] == 404


def test_openapi_document_is_public(edge: EdgeProcess) -> None:
    doc = edge.get("/v1/openapi.json", auth=False)
    assert doc["openapi"].startswith("3.") and "/v1/readings" in doc["paths"]


def test_reload_applies_device_changes_and_refuses_invalid_config(edge: EdgeProcess) -> None:
    text = edge.config.read_text()
    try:
        edge.config.write_text(text.replace('interval = "50ms"', 'interval = "70ms"'))
        # the replace also turned [store] commit_interval "50ms" into "70ms": that one waits for a restart
        assert edge.request("POST", "/v1/reload") == {"reloaded": True, "restart_needed": ["[store]"]}
        assert edge.get("/v1/devices")["devices"][0]["interval"] == 0.07
        edge.config.write_text(text + "\n[[device]]\nname = 'broken'\n")
        code, body, _ = status_of(edge, "POST", "/v1/reload")
        assert code == 422 and "device[1].driver" in body["problems"][0]
        assert edge.get("/v1/devices")["devices"][0]["interval"] == 0.07  # still running the old config
        code, body, _ = status_of(edge, "PUT", "/v1/config", {"text": "[edge]\nid = 'x y'\n"})
        assert code == 422 and "edge.id: expected a name matching" in body["error"]
        code, body, _ = status_of(edge, "PUT", "/v1/config", {"text": text})
        assert code == 200 and body["reloaded"] is True
        assert edge.config.with_name("edge.toml.bak").exists()
        assert edge.get("/v1/devices")["devices"][0]["interval"] == 0.05
    finally:
        edge.config.write_text(text)


def test_config_errors_name_a_secret_never_its_value(edge: EdgeProcess) -> None:
    """A value from `secret:NAME` that fails validation: the 422 bodies of reload and PUT, and the event, name
    the reference."""
    from edge.secrets import SecretStore

    SecretStore(edge.data_dir).set("hookurl", "ftp://admin:Hunter2Pw@example.com/x")
    text = edge.config.read_text()
    bad = text + '\n[[sink]]\nname = "hook"\ntype = "http"\nurl = "secret:hookurl"\n'
    line = bad.splitlines().index('url = "secret:hookurl"') + 1
    expected = (f"{edge.config}:{line}: sink[0].url: expected http://host/path or https://host/path, "
                "found the value of secret:hookurl (not shown)")
    try:
        edge.config.write_text(bad)
        code, body, _ = status_of(edge, "POST", "/v1/reload")
        assert code == 422 and body["problems"] == [expected], body
        edge.config.write_text(text)
        code, body, _ = status_of(edge, "PUT", "/v1/config", {"text": bad})
        assert code == 422 and body["problems"] == [expected], body
        assert edge.config.read_text() == text
        events = wait_until(lambda: (e := json.dumps(edge.get("/v1/events?kind=reload_failed"))) and "hookurl" in e
                            and e)  # events are served once durable
        assert "secret:hookurl (not shown)" in events
        for part in ("Hunter2Pw", "admin", "example.com"):
            assert part not in events
    finally:
        edge.config.write_text(text)
        for name in ("secrets.json", "secrets.key"):
            (edge.data_dir / name).unlink(missing_ok=True)


def test_put_config_refuses_what_the_reload_would_refuse_and_leaves_the_file(edge: EdgeProcess) -> None:
    """A transform that does not load is found before the file is replaced, so the next restart still works."""
    folder = edge.config.parent / "transforms"
    folder.mkdir(exist_ok=True)
    (folder / "broken.py").write_text("import nonexistent_mod\n")
    (folder / "ok.py").write_text("def f(r):\n    return r\n")
    text = edge.config.read_text()
    bak = edge.config.with_name("edge.toml.bak")
    bak_before = bak.read_text() if bak.exists() else None
    refused_before = len(edge.get("/v1/events?kind=reload_failed")["events"])
    try:
        for function, problem in (("broken.f", f"{folder / 'broken.py'}: failed to import: ModuleNotFoundError: "
                                               "No module named 'nonexistent_mod'"),
                                  ("ok.g", f"transform 'ok.g': expected a function 'g' in {folder / 'ok'}.py"),
                                  ("gone.f", f"transform 'gone.f': expected a file {folder / 'gone.py'}, found none")):
            new = text + f'\n[[pipeline.transform]]\nfunction = "{function}"\n'
            line = new.splitlines().index(f'function = "{function}"') + 1
            code, body, _ = status_of(edge, "PUT", "/v1/config", {"text": new})
            assert code == 422, body
            assert body["problems"] == [f"{edge.config}:{line}: pipeline.transform[0].function: {problem}"], body
            assert edge.config.read_text() == text  # neither replaced
            assert (bak.read_text() if bak.exists() else None) == bak_before  # nor backed up
        time.sleep(0.3)  # events are served once durable (commit_interval 50ms)
        assert len(edge.get("/v1/events?kind=reload_failed")["events"]) == refused_before  # no reload was tried
        code, body, _ = status_of(edge, "PUT", "/v1/config",
                                  {"text": text + '\n[[pipeline.transform]]\nfunction = "ok.f"\n'})
        assert code == 200 and body["reloaded"] is True, body
    finally:
        assert status_of(edge, "PUT", "/v1/config", {"text": text})[0] == 200


def test_signed_pages_verify_with_the_appliance_key(tmp_path: Path) -> None:
    from edge.identity import init_keys, load_public_signing_key
    from edge.signing import verify_payload

    cfg = write_config(tmp_path, CONFIG)
    cfg.write_text(cfg.read_text().replace("[api]\n", "[api]\nsign = true\n"))
    edge = EdgeProcess(cfg)
    missing = subprocess.run([sys.executable, "-m", "edge", "run", "-c", str(cfg)], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "api.sign = true but the signing key is unusable" in missing.stderr
    init_keys(edge.data_dir, "test")
    edge.start()
    try:
        page = wait_until(lambda: (p := edge.get("/v1/readings?limit=5")) and p["readings"] and p)
        assert page["sig"]["alg"] == "ed25519"
        assert verify_payload(page, load_public_signing_key(edge.data_dir))
        page["readings"][0]["value"] = 123456.0
        assert not verify_payload(page, load_public_signing_key(edge.data_dir))
    finally:
        edge.stop()


def test_a_pull_scope_token_reads_but_cannot_configure_or_control(edge: EdgeProcess) -> None:
    import secrets as _secrets

    from edge.api.tokens import TokenCheck

    pull = _secrets.token_urlsafe(32)
    check = TokenCheck([edge.token, f"pull {pull}"])
    assert check.scope(f"Bearer {edge.token}") == "full" and check.scope(f"Bearer {pull}") == "pull"
    assert check.scope("Bearer nope") is None and check.scope(None) is None
    bound = _secrets.token_urlsafe(32)  # a central system's token that may move only its own cursor
    tokens = edge.data_dir / "tokens"
    text = tokens.read_text()
    tokens.write_text(text + f"pull {pull}\npull {bound} consumer=erp\n")
    edge.stop()
    edge.start()
    try:
        assert status_of(edge, "GET", "/v1/readings?limit=1", token=pull)[0] == 200
        assert status_of(edge, "PUT", "/v1/cursors/scoped", {"seq": 0}, token=pull)[0] == 200
        assert status_of(edge, "GET", "/v1/readings?limit=1", token=bound)[0] == 200
        assert status_of(edge, "PUT", "/v1/cursors/erp", {"seq": 0}, token=bound)[0] == 200
        for method, body in (("PUT", {"seq": 0}), ("DELETE", None)):
            code, answer, _ = status_of(edge, method, "/v1/cursors/scoped", body, token=bound)
            assert code == 403 and answer["parameter"] == "consumer" and "'erp'" in answer["error"], answer
        assert edge.get("/v1/cursors")["cursors"][-1]["name"] == "scoped"  # still there
        assert status_of(edge, "DELETE", "/v1/cursors/erp", token=bound)[0] == 200
        for method, path, body in (("GET", "/v1/config", None), ("POST", "/v1/reload", None),
                                   ("POST", "/v1/devices/sim/points/setpoint", {"value": 1}),
                                   ("DELETE", "/v1/dead-letters/1", None)):
            code, answer, _ = status_of(edge, method, path, body, token=pull)
            assert code == 403 and "pull scope" in answer["error"], (method, path)
        assert status_of(edge, "GET", "/v1/config")[0] == 200  # the full token still may
    finally:
        tokens.write_text(text)
