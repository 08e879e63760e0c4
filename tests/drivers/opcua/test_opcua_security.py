"""Security against a server offering only signed/encrypted endpoints: trust workflow, certificates, user tokens."""

from __future__ import annotations

import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from opcua_peers import Collector, ServerProcess

from drivers.opcua.cli import opcua
from drivers.opcua.config import OpcuaDevice
from drivers.opcua.pki import Pki, load_certificate, make_certificate
from drivers.registry import create_driver

APP_URI = "urn:test-host:edge"


def device(url: str, pki_dir: Path, security: str, mode: str = "subscribe", **extra: Any) -> OpcuaDevice:
    return OpcuaDevice.model_validate({
        "name": "secure-line", "driver": "opcua", "url": url, "mode": mode, "interval": "200ms",
        "security": security, "pki_dir": str(pki_dir), "application_uri": APP_URI, "reconnect_max": "1s",
        "username": "operator", "password": "secret",
        "point": [{"name": "counter", "node": "ns=2;i=1001"}, {"name": "double", "node": "ns=2;s=Line1.Double"}],
        **extra,
    })


async def test_untrusted_server_is_refused_then_trusted_through_the_cli(
    secure_server: ServerProcess, tmp_path: Path
) -> None:
    pki_dir = tmp_path / "pki"
    driver = create_driver(device(secure_server.url, pki_dir, "Basic256Sha256,SignAndEncrypt"))
    async with Collector(driver) as c:
        await c.wait_for(lambda: c.of("counter", good=False), 10, "a bad reading")
        refused = c.of("counter", good=False)[0]
        assert refused.quality == "bad"
        assert "not trusted" in (refused.error or "") and "edge opcua trust" in (refused.error or "")
        assert driver.status.state == "down" and "not trusted" in (driver.status.last_error or "")
        rejected = list((pki_dir / "rejected").iterdir())
        assert len(rejected) == 1
        server_cert = load_certificate(Path(secure_server.cert).read_bytes())  # type: ignore[attr-defined]
        assert load_certificate(rejected[0].read_bytes()) == server_cert
        assert str(rejected[0]) in (refused.error or "")

        runner = CliRunner()
        listed = runner.invoke(opcua, ["rejected", "--pki-dir", str(pki_dir)])
        assert listed.exit_code == 0 and rejected[0].name in listed.output and "sha256" in listed.output
        trusted = runner.invoke(opcua, ["trust", rejected[0].name, "--pki-dir", str(pki_dir)])
        assert trusted.exit_code == 0, trusted.output
        assert not list((pki_dir / "rejected").iterdir())

        # the same running driver connects on its next attempt: no restart needed
        await c.wait_for(lambda: len(c.of("counter")) >= 3, 10, "good values after trusting")
    assert driver.status.reconnects == 0  # the first session is not a reconnect

    # our application instance certificate: generated on first use, right URI and SAN, private key 0600
    own = Pki(pki_dir)
    cert = x509.load_der_x509_certificate(own.own_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [APP_URI]
    assert socket.gethostname() in san.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(own.own_key.stat().st_mode) == 0o600


def trusted_pki(tmp_path: Path, server: ServerProcess) -> Path:
    pki_dir = tmp_path / "pki"
    Pki(pki_dir).trust(Path(server.cert))  # type: ignore[attr-defined]
    return pki_dir


async def test_aes128_sign_in_poll_mode(secure_server: ServerProcess, tmp_path: Path) -> None:
    driver = create_driver(device(secure_server.url, trusted_pki(tmp_path, secure_server), "Aes128_Sha256_RsaOaep,Sign",
                                  mode="poll"))
    try:
        readings = await driver.poll()
    finally:
        await driver.stop()
    assert {r.point: r.quality for r in readings} == {"counter": "good", "double": "good"}


async def test_wrong_password_is_a_clear_bad_reading(secure_server: ServerProcess, tmp_path: Path) -> None:
    cfg = device(secure_server.url, trusted_pki(tmp_path, secure_server), "Basic256Sha256,SignAndEncrypt",
                 mode="poll", password="wrong")
    driver = create_driver(cfg)
    readings = await driver.poll()
    await driver.stop()
    assert readings[0].quality == "bad"
    assert "Bad" in (readings[0].error or "") and driver.status.state == "down"


async def test_certificate_user_token(secure_server: ServerProcess, tmp_path: Path) -> None:
    pki_dir = trusted_pki(tmp_path, secure_server)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (pki_dir / "user").mkdir()
    (pki_dir / "user" / "cert.der").write_bytes(
        make_certificate(key, "urn:test:user").public_bytes(serialization.Encoding.DER)
    )
    (pki_dir / "user" / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cfg = device(secure_server.url, pki_dir, "Basic256Sha256,SignAndEncrypt", mode="poll",
                 username=None, password=None, user_certificate="user/cert.der", user_private_key="user/key.pem")
    driver = create_driver(cfg)
    try:
        readings = await driver.poll()
    finally:
        await driver.stop()
    assert [r.quality for r in readings] == ["good", "good"], readings


def test_trust_refuses_a_file_that_is_not_a_certificate(tmp_path: Path) -> None:
    junk = tmp_path / "junk.der"
    junk.write_bytes(b"not a certificate")
    result = CliRunner().invoke(opcua, ["trust", str(junk), "--pki-dir", str(tmp_path / "pki")])
    assert result.exit_code != 0 and "not a PEM or DER certificate" in result.output


def test_trust_uses_the_pki_the_file_is_in_and_the_config_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = Pki(tmp_path / "data" / "pki" / "opcua")
    pki.rejected_dir.mkdir(parents=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = pki.rejected_dir / "plc.der"
    refused.write_bytes(make_certificate(key, "urn:plc", server=True).public_bytes(serialization.Encoding.DER))
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("EDGE_DATA_DIR", raising=False)
    runner = CliRunner()
    assert runner.invoke(opcua, ["trust", str(refused)]).exit_code == 0
    assert len(list(pki.trusted_dir.iterdir())) == 1 and not (elsewhere / "pki").exists()

    config = tmp_path / "edge.toml"
    config.write_text(f'[edge]\nid = "t"\ndata_dir = "{tmp_path / "data"}"\n\n[[device]]\nname = "plc"\n'
                      'driver = "opcua"\nurl = "opc.tcp://127.0.0.1:4840"\n')
    listed = runner.invoke(opcua, ["trusted", "-c", str(config), "--json"])
    assert listed.exit_code == 0, listed.output
    assert str(pki.trusted_dir) in listed.output
