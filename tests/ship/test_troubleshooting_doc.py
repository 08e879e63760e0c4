"""docs/troubleshooting.md quotes the errors the security code really raises (so the doc cannot drift)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.identity import KeysMissing, load_signing_key
from edge.secrets import SecretKeyError, SecretMissing, SecretStore, resolve_secrets
from edge.security_cli import verify
from edge.signing import public_key_b64, sign_payload

DOC = (Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md").read_text()


def _quoted_in_doc(message: str, fragment: str) -> None:
    assert fragment in message, message
    assert fragment in DOC, f"docs/troubleshooting.md does not mention {fragment!r}"


def test_secret_errors_are_documented(tmp_path: Path) -> None:
    with pytest.raises(SecretMissing) as missing:
        resolve_secrets({"sink": [{"password": "secret:mqtt"}]}, str(tmp_path))
    _quoted_in_doc(str(missing.value), "secrets not set: sink[0].password refers to secret 'mqtt'")
    SecretStore(tmp_path).set("mqtt", "x")
    (tmp_path / "secrets.key").unlink()
    with pytest.raises(SecretKeyError) as gone:
        SecretStore(tmp_path).get("mqtt")
    _quoted_in_doc(str(gone.value), "is missing, so the secrets in")
    SecretStore(tmp_path / "other").set("y", "z")
    with pytest.raises(SecretKeyError) as wrong:
        SecretStore(tmp_path, key_file=tmp_path / "other" / "secrets.key").get("mqtt")
    _quoted_in_doc(str(wrong.value), "is not the key")


def test_key_and_signature_errors_are_documented(tmp_path: Path) -> None:
    with pytest.raises(KeysMissing) as missing:
        load_signing_key(tmp_path)
    _quoted_in_doc(str(missing.value), "no signing key at ")
    key = Ed25519PrivateKey.generate()
    signed = sign_payload({"edge": "a", "readings": [{"value": 1.5}]}, key)
    runner = CliRunner()
    bad = runner.invoke(verify, ["--key", public_key_b64(key.public_key())],
                        input=json.dumps(signed).replace("1.5", "2.5"))
    _quoted_in_doc(bad.output, "signature INVALID: the payload was changed or not signed by this key")
    other = runner.invoke(verify, ["--key", public_key_b64(Ed25519PrivateKey.generate().public_key())],
                          input=json.dumps(signed))
    _quoted_in_doc(other.output, ", not by the given key ")
