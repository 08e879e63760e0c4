"""Identity and signed payloads: keys on disk, CSR contents, sign/verify round trip, tampering rejected."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.identity import init_keys, key_files, load_csr, load_public_signing_key, load_signing_key
from edge.security_cli import keys, verify
from edge.signing import canonical_bytes, fingerprint, public_key_b64, sign_payload, verify_payload

PAYLOAD = {"edge": "site-a", "readings": [
    {"seq": 1041, "device": "plc1", "point": "temperature", "ts": "2026-11-21T22:45:00.123Z",
     "value": 21.5, "unit": "°C", "quality": "good"},
    {"seq": 1042, "device": "plc1", "point": "pressure", "ts": "2026-11-21T22:45:00.123Z",
     "value": None, "quality": "bad", "error": "timeout"}]}


def test_keys_init_creates_private_files_and_a_csr_naming_the_edge(tmp_path: Path) -> None:
    result = init_keys(tmp_path, "site-a")
    files = key_files(tmp_path)
    assert set(result.created) == {files.signing_key, files.signing_pub, files.tls_key, files.tls_csr}
    assert stat.S_IMODE(files.dir.stat().st_mode) == 0o700
    for private in (files.signing_key, files.tls_key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    csr = load_csr(tmp_path)
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "site-a"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:edge:site-a"]
    eku = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in list(eku)
    public = csr.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert isinstance(load_signing_key(tmp_path), Ed25519PrivateKey)


def test_keys_init_is_idempotent_and_rewrites_the_csr_for_a_new_id(tmp_path: Path) -> None:
    init_keys(tmp_path, "site-a")
    files = key_files(tmp_path)
    before = files.signing_key.read_bytes(), files.tls_key.read_bytes()
    again = init_keys(tmp_path, "site-a")
    assert again.created == []
    renamed = init_keys(tmp_path, "site-b")
    assert renamed.created == [files.tls_csr]
    assert (files.signing_key.read_bytes(), files.tls_key.read_bytes()) == before
    assert load_csr(tmp_path).subject.rfc4514_string() == "CN=site-b"
    init_keys(tmp_path, "site-b", force=True)
    assert files.signing_key.read_bytes() != before[0]


def test_fingerprint_is_sha256_of_the_raw_public_key(tmp_path: Path) -> None:
    init_keys(tmp_path, "site-a")
    pub = load_public_signing_key(tmp_path)
    raw = base64.b64decode(public_key_b64(pub))
    assert len(raw) == 32
    assert fingerprint(pub) == hashlib.sha256(raw).hexdigest()


def test_sign_verify_round_trip_and_through_json() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_payload(PAYLOAD, key)
    assert "sig" not in PAYLOAD  # the input is not changed
    assert signed["sig"]["alg"] == "ed25519" and signed["sig"]["key"] == fingerprint(key.public_key())
    assert len(base64.b64decode(signed["sig"]["value"])) == 64
    assert verify_payload(signed, key.public_key())
    wire = json.dumps(signed, indent=4, ensure_ascii=True)  # any JSON formatting on the wire is fine
    assert verify_payload(json.loads(wire), key.public_key())
    assert verify_payload(signed, public_key_b64(key.public_key()))


def test_canonical_encoding_is_the_documented_one() -> None:
    expected = json.dumps({"edge": "site-a", "readings": PAYLOAD["readings"]}, sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_bytes({**PAYLOAD, "sig": {"x": 1}}) == expected
    assert "°C".encode() in expected


@pytest.mark.parametrize("tamper", [
    lambda p: p["readings"][0].__setitem__("value", 21.6),
    lambda p: p.__setitem__("edge", "site-b"),
    lambda p: p["readings"].pop(),
    lambda p: p.__setitem__("extra", 1),
    lambda p: p["sig"].__setitem__("value", base64.b64encode(b"\0" * 64).decode()),
    lambda p: p["sig"].__setitem__("value", "not base64!"),
    lambda p: p["sig"].__setitem__("alg", "rsa"),
    lambda p: p.pop("sig"),
])
def test_tampered_payload_is_rejected(tamper: Any) -> None:
    key = Ed25519PrivateKey.generate()
    signed = copy.deepcopy(sign_payload(PAYLOAD, key))
    tamper(signed)
    assert not verify_payload(signed, key.public_key())


def test_another_key_is_rejected() -> None:
    signed = sign_payload(PAYLOAD, Ed25519PrivateKey.generate())
    assert not verify_payload(signed, Ed25519PrivateKey.generate().public_key())


def test_cli_keys_and_verify(tmp_path: Path) -> None:
    runner = CliRunner()
    config = tmp_path / "edge.toml"
    config.write_text(f'[edge]\nid = "site-a"\ndata_dir = "{tmp_path / "data"}"\n')
    r = runner.invoke(keys, ["init", "-c", str(config)])
    assert r.exit_code == 0, r.output
    assert "fingerprint:" in r.output
    r = runner.invoke(keys, ["show", "-c", str(config), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    key = load_signing_key(tmp_path / "data")
    assert info["fingerprint"] == fingerprint(key.public_key())
    signed = json.dumps(sign_payload(PAYLOAD, key))
    pem = tmp_path / "edge.pub"
    pem.write_text(runner.invoke(keys, ["show", "-c", str(config), "--pem"]).output)
    for key_arg in (info["public_key"], str(pem)):
        r = runner.invoke(verify, ["--key", key_arg], input=signed)
        assert r.exit_code == 0, r.output
        assert "valid" in r.output
    tampered = signed.replace("21.5", "22.5")
    r = runner.invoke(verify, ["--key", info["public_key"]], input=tampered)
    assert r.exit_code == 1 and "INVALID" in r.output
    other = public_key_b64(Ed25519PrivateKey.generate().public_key())
    r = runner.invoke(verify, ["--key", other], input=signed)
    assert r.exit_code == 1 and "not by the given key" in r.output
    r = runner.invoke(verify, ["--key", "nonsense"], input=signed)
    assert r.exit_code == 1 and "--key" in r.output


def test_keys_init_without_an_edge_id_says_so(tmp_path: Path) -> None:
    r = CliRunner().invoke(keys, ["init", "--data-dir", str(tmp_path), "-c", str(tmp_path / "none.toml")])
    assert r.exit_code == 1 and "does not exist" in r.output
    (tmp_path / "e.toml").write_text("[edge]\n")
    r = CliRunner().invoke(keys, ["init", "--data-dir", str(tmp_path), "-c", str(tmp_path / "e.toml")])
    assert r.exit_code == 1 and "no edge id" in r.output


def test_a_signed_pull_api_page_verifies_after_the_wire() -> None:
    """The API signs the page dict, then encodes it its own way; a receiver parses and verifies."""
    from edge.api.handlers import page_bytes
    from edge.reading import Reading

    key = Ed25519PrivateKey.generate()
    readings = [Reading("plc1", "temperature", 21.0, ts=1_790_000_000.123, unit="°C", seq=7),
                Reading("plc1", "flag", True, ts=1_790_000_000.5, seq=8),
                Reading.bad("plc1", "pressure", "timeout", ts=1_790_000_001.0)]
    wire = page_bytes("site-a", readings, 6, sign=lambda page: sign_payload(page, key))
    assert verify_payload(json.loads(wire), key.public_key())
    assert not verify_payload(json.loads(wire.replace(b"21.0", b"21")), key.public_key())
