"""Signed payloads: the canonical encoding, Ed25519 signing and verification of one payload.

Canonical encoding of a payload (the bytes that are signed) — the payload without its top-level `sig`:
``json.dumps(payload_without_sig, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False).encode("utf-8")``. The signature field is
``"sig": {"alg": "ed25519", "key": FINGERPRINT, "value": BASE64}`` where FINGERPRINT is the lowercase hex
SHA-256 of the raw 32-byte public key and BASE64 the standard (padded) base64 of the 64-byte signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "ALG",
    "SIG_FIELD",
    "PublicKeyError",
    "canonical_bytes",
    "fingerprint",
    "load_public_key",
    "public_key_b64",
    "sign_payload",
    "verify_payload",
]

ALG = "ed25519"
SIG_FIELD = "sig"
RAW_PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class PublicKeyError(ValueError):
    """A public key given by a user could not be read."""


def canonical_bytes(payload: dict[str, Any]) -> bytes:
    """Return the bytes that are signed: the payload without `sig` as compact, key-sorted UTF-8 JSON."""
    body = {k: v for k, v in payload.items() if k != SIG_FIELD}
    # default=str matches how the sinks and the API put non-JSON values on the wire; a receiver parsing
    # the wire JSON gets those strings and so reproduces the same bytes without it.
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=str).encode("utf-8")


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """Return the key's fingerprint: lowercase hex SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(_raw(public_key)).hexdigest()


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    """Return the raw 32-byte public key in standard base64 (the form `edge keys show` prints)."""
    return base64.b64encode(_raw(public_key)).decode("ascii")


def sign_payload(payload: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Return a copy of payload with a `sig` field over its canonical encoding (any old `sig` replaced)."""
    signature = key.sign(canonical_bytes(payload))
    signed = {k: v for k, v in payload.items() if k != SIG_FIELD}
    signed[SIG_FIELD] = {"alg": ALG, "key": fingerprint(key.public_key()),
                         "value": base64.b64encode(signature).decode("ascii")}
    return signed


def verify_payload(payload: dict[str, Any], public_key: Ed25519PublicKey | bytes | str) -> bool:
    """Return True when payload carries a valid Ed25519 `sig` made by public_key, else False."""
    key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
    sig = payload.get(SIG_FIELD)
    if not isinstance(sig, dict) or sig.get("alg") != ALG or sig.get("key") != fingerprint(key):
        return False
    value = sig.get("value")
    if not isinstance(value, str):
        return False
    try:
        signature = base64.b64decode(value, validate=True)
        key.verify(signature, canonical_bytes(payload))
    except (binascii.Error, InvalidSignature, ValueError, TypeError):
        return False
    return True


def load_public_key(source: bytes | str | Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key: PEM text, raw base64 (as `edge keys show` prints), or a file of either."""
    if isinstance(source, Path):
        source = source.read_bytes()
    if isinstance(source, str):
        text = source.strip()
        if "-----BEGIN" not in text and len(text) < 200 and Path(text).is_file():
            source = Path(text).read_bytes()
        else:
            source = text.encode("ascii", "replace")
    data = source.strip()
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise PublicKeyError(f"not a PEM public key: {e}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise PublicKeyError(f"not an Ed25519 public key but {type(key).__name__}")
        return key
    if len(data) == RAW_PUBLIC_KEY_BYTES:
        return Ed25519PublicKey.from_public_bytes(data)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise PublicKeyError("public key is neither PEM nor base64 of 32 bytes") from None
    if len(raw) != RAW_PUBLIC_KEY_BYTES:
        raise PublicKeyError(f"public key is {len(raw)} bytes after base64, expected {RAW_PUBLIC_KEY_BYTES}")
    return Ed25519PublicKey.from_public_bytes(raw)
