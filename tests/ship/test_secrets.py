"""Secrets at rest: encrypted on disk, resolved from `secret:NAME`, clear errors for missing or wrong keys."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edge.secrets import SecretKeyError, SecretMissing, SecretStore, resolve_secrets
from edge.security_cli import secrets

PLAIN = "hunter2-Very-Secret-Password"


def test_secrets_file_holds_no_plaintext(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    store.set("mqtt", PLAIN)
    store.set("api-token", "tok-" + PLAIN[::-1])
    for f in tmp_path.rglob("*"):
        assert PLAIN.encode() not in f.read_bytes()
        assert PLAIN[::-1].encode() not in f.read_bytes()
    grep = subprocess.run(["grep", "-r", "-F", PLAIN, str(tmp_path)], capture_output=True)
    assert grep.returncode == 1  # grep found nothing
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.key_file.stat().st_mode) == 0o600
    assert store.names() == ["api-token", "mqtt"]
    assert store.get("mqtt") == PLAIN


def test_wrong_key_fails_clearly(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("mqtt", PLAIN)
    other = tmp_path / "other.key"
    SecretStore(tmp_path / "elsewhere", key_file=other).set("x", "y")  # makes a different valid key
    with pytest.raises(SecretKeyError, match="not the key"):
        SecretStore(tmp_path, key_file=other).get("mqtt")
    (tmp_path / "secrets.key").unlink()
    with pytest.raises(SecretKeyError, match="is missing"):
        SecretStore(tmp_path).get("mqtt")


def test_modified_ciphertext_fails_clearly(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    store.set("mqtt", PLAIN)
    store.set("other", "value")
    doc = json.loads(store.path.read_text())
    doc["secrets"]["mqtt"]["ct"], doc["secrets"]["other"]["ct"] = (doc["secrets"]["other"]["ct"],
                                                                     doc["secrets"]["mqtt"]["ct"])
    store.path.write_text(json.dumps(doc))
    with pytest.raises(SecretKeyError, match=r"wrong key file or .* was modified"):
        store.get("mqtt")


def test_resolve_secrets_replaces_references_and_names_the_missing(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("mqtt", PLAIN)
    config: dict[str, Any] = {"edge": {"id": "a"}, "sink": [{"name": "cloud", "password": "secret:mqtt", "qos": 1}],
              "device": [{"name": "d", "tags": ["plain", "secret:mqtt"]}]}
    resolved = resolve_secrets(config, str(tmp_path))
    assert resolved["sink"][0]["password"] == PLAIN
    assert resolved["device"][0]["tags"] == ["plain", PLAIN]
    assert config["sink"][0]["password"] == "secret:mqtt"  # input untouched
    config["sink"].append({"name": "http", "token": "secret:http-token"})
    with pytest.raises(SecretMissing) as e:
        resolve_secrets(config, str(tmp_path))
    assert "sink[1].token" in str(e.value) and "'http-token'" in str(e.value)
    assert "edge secrets set" in str(e.value)


def test_resolve_secrets_without_references_reads_nothing(tmp_path: Path) -> None:
    config = {"edge": {"id": "a"}}
    assert resolve_secrets(config, str(tmp_path / "does-not-exist")) == config


def test_key_file_can_live_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "usb" / "edge-secrets.key"
    data = tmp_path / "data"
    SecretStore(data, key_file=key).set("mqtt", PLAIN)
    assert key.exists() and not (data / "secrets.key").exists()
    config = {"secrets": {"key_file": str(key)}, "sink": [{"password": "secret:mqtt"}]}
    assert resolve_secrets(config, str(data))["sink"][0]["password"] == PLAIN
    monkeypatch.setenv("EDGE_SECRETS_KEY_FILE", str(key))
    assert SecretStore(data).get("mqtt") == PLAIN


def test_cli_set_list_delete_reads_stdin_and_never_prints_the_value(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--data-dir", str(tmp_path), "-c", str(tmp_path / "absent-is-error.toml")]
    r = runner.invoke(secrets, ["set", "mqtt", *args], input=PLAIN + "\n")
    assert r.exit_code == 1  # an explicit config that does not exist is an error
    (tmp_path / "edge.toml").write_text("[edge]\nid = 'a'\n")
    args = ["--data-dir", str(tmp_path), "-c", str(tmp_path / "edge.toml")]
    r = runner.invoke(secrets, ["set", "mqtt", *args], input=PLAIN + "\n")
    assert r.exit_code == 0, r.output
    assert PLAIN not in r.output
    assert SecretStore(tmp_path).get("mqtt") == PLAIN  # the trailing newline is not part of it
    r = runner.invoke(secrets, ["list", *args])
    assert r.output.split() == ["mqtt"]
    r = runner.invoke(secrets, ["set", "bad name", *args], input="x")
    assert r.exit_code == 1 and "invalid secret name" in r.output
    r = runner.invoke(secrets, ["delete", "mqtt", *args])
    assert r.exit_code == 0
    r = runner.invoke(secrets, ["delete", "mqtt", *args])
    assert r.exit_code == 1 and "not set" in r.output


def test_cli_prompts_without_echo_on_a_terminal(tmp_path: Path) -> None:
    """Drive `edge secrets set` through a real pseudo-terminal: the typed value is not echoed."""
    import pty

    (tmp_path / "edge.toml").write_text(f"[edge]\nid = 'a'\ndata_dir = '{tmp_path}'\n")
    config = str(tmp_path / "edge.toml")
    code = f"from edge.security_cli import secrets; secrets(['set', 'mqtt', '-c', {config!r}])"
    pid, fd = pty.fork()
    if pid == 0:  # child: stdin/stdout/stderr are the pty
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    sent = 0
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if out.count(b"value for mqtt") + out.count(b"Repeat for confirmation") > sent:
            sent += 1
            os.write(fd, PLAIN.encode() + b"\r")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert PLAIN.encode() not in out
    assert SecretStore(tmp_path).get("mqtt") == PLAIN


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_files_made_by_root_belong_to_the_data_dir_owner(tmp_path: Path) -> None:
    """`sudo edge secrets set` / `sudo edge keys init` must leave files the service user can read."""
    from edge.identity import init_keys, key_files

    nobody = 65534
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, nobody, nobody)
    SecretStore(data).set("mqtt", PLAIN)
    init_keys(data, "site-a")
    made = [data / "secrets.json", data / "secrets.key", key_files(data).dir, key_files(data).signing_key,
            key_files(data).tls_key]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in made} == {(nobody, nobody)}


def test_cli_and_daemon_agree_on_a_relative_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative [edge] data_dir is relative to the config file, for `edge secrets` as for the daemon."""
    conf = tmp_path / "etc" / "edge.toml"
    conf.parent.mkdir()
    conf.write_text('[edge]\nid = "a"\ndata_dir = "../data"\n')
    monkeypatch.chdir("/")
    r = CliRunner().invoke(secrets, ["set", "mqtt", "-c", str(conf)], input=PLAIN)
    assert r.exit_code == 0, r.output
    assert SecretStore(tmp_path / "data").get("mqtt") == PLAIN
