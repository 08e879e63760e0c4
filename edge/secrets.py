"""Secrets at rest: `secret:NAME` references in the config, stored AES-256-GCM encrypted in the data dir.

The secrets file (``<data_dir>/secrets.json``, 0600) holds names in clear and values encrypted with a
32-byte key kept in a separate key file (``<data_dir>/secrets.key`` by default, 0600; another path via
``[secrets] key_file`` in the config or ``$EDGE_SECRETS_KEY_FILE``). See docs/security.md for what this does
and does not protect against.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets as _random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.files import write_private

__all__ = [
    "KEY_FILE_ENV",
    "SECRET_PREFIX",
    "SecretError",
    "SecretKeyError",
    "SecretMissing",
    "SecretStore",
    "resolve_secrets",
    "secret_key_file",
]

SECRET_PREFIX = "secret:"
SECRETS_FILE = "secrets.json"
DEFAULT_KEY_FILE = "secrets.key"
KEY_FILE_ENV = "EDGE_SECRETS_KEY_FILE"
FORMAT = "edge-secrets/1"
ALG = "AES-256-GCM"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_HEX_CHARS = 16
MAX_SECRET_BYTES = 64 * 1024
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
AAD_PREFIX = b"edge-secret/1:"


class SecretError(Exception):
    """A secret cannot be stored, found or decrypted."""


class SecretMissing(SecretError):
    """A `secret:NAME` reference names a secret that is not set."""


class SecretKeyError(SecretError):
    """The key file is missing, unreadable or not the key the secrets were written with."""


def secret_key_file(data_dir: str | os.PathLike[str], configured: str | None = None) -> Path:
    """Return the key file: $EDGE_SECRETS_KEY_FILE, else configured (relative to data_dir), else default."""
    chosen = os.environ.get(KEY_FILE_ENV) or configured or DEFAULT_KEY_FILE
    return Path(data_dir) / chosen  # an absolute `chosen` replaces data_dir


def check_name(name: str) -> str:
    """Return name when it is a valid secret name ([A-Za-z0-9._-]{1,64}), else raise SecretError."""
    if not NAME_RE.fullmatch(name):
        raise SecretError(f"invalid secret name {name!r}: use 1-64 of A-Z a-z 0-9 . _ -")
    return name


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"edge-secrets-key-id:" + key).hexdigest()[:KEY_ID_HEX_CHARS]


class SecretStore:
    """The encrypted secrets of one appliance: set, get, list names, delete."""

    def __init__(self, data_dir: str | os.PathLike[str], *, key_file: str | os.PathLike[str] | None = None):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / SECRETS_FILE
        self.key_file = Path(key_file) if key_file is not None else secret_key_file(data_dir)

    # -- key -------------------------------------------------------------------------------------------
    def _load_key(self, *, create: bool) -> bytes:
        try:
            raw = self.key_file.read_bytes()
        except FileNotFoundError:
            if not create:
                raise SecretKeyError(f"secrets key file {self.key_file} is missing, so the secrets in "
                                     f"{self.path} cannot be decrypted (restore the key file, or set "
                                     "the secrets again)") from None
            key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
            write_private(self.key_file, base64.b64encode(key) + b"\n", owner_like=self.data_dir)
            return key
        except PermissionError:
            raise SecretKeyError(f"cannot read secrets key file {self.key_file}: permission denied "
                                 "(run as the user that owns it, e.g. `sudo -u edge edge ...`)") from None
        if len(raw) == KEY_BYTES:
            return raw
        try:
            key = base64.b64decode(raw.strip(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise SecretKeyError(f"secrets key file {self.key_file} is not a {KEY_BYTES}-byte key")
        return key

    # -- file ------------------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {"format": FORMAT, "alg": ALG, "key_id": None, "secrets": {}}
        except PermissionError:
            raise SecretError(f"cannot read {self.path}: permission denied") from None
        except ValueError as e:
            raise SecretError(f"{self.path} is not a secrets file: {e}") from None
        valid = isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("secrets"), dict)
        if not valid:
            raise SecretError(f"{self.path} is not an {FORMAT} secrets file")
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc, indent=1, sort_keys=True).encode("utf-8") + b"\n"
        write_private(self.path, data, owner_like=self.data_dir)

    def _check_key(self, doc: dict[str, Any], key: bytes) -> None:
        if doc.get("key_id") and doc["secrets"] and doc["key_id"] != _key_id(key):
            raise SecretKeyError(f"secrets key file {self.key_file} is not the key {self.path} was written "
                                 f"with (key id {_key_id(key)}, file expects {doc['key_id']})")

    # -- public ----------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Return the names of the stored secrets, sorted (no key needed)."""
        return sorted(self._load()["secrets"])

    def set(self, name: str, value: str) -> None:
        """Store value under name, encrypted (creating the key file on first use)."""
        check_name(name)
        plain = value.encode("utf-8")
        if len(plain) > MAX_SECRET_BYTES:
            raise SecretError(f"secret {name!r} is longer than {MAX_SECRET_BYTES} bytes")
        doc = self._load()
        key = self._load_key(create=not doc["secrets"])
        self._check_key(doc, key)
        nonce = _random.token_bytes(NONCE_BYTES)
        ct = AESGCM(key).encrypt(nonce, plain, AAD_PREFIX + name.encode("ascii"))
        doc["key_id"] = _key_id(key)
        doc["alg"] = ALG
        doc["secrets"][name] = {"nonce": base64.b64encode(nonce).decode("ascii"),
                                "ct": base64.b64encode(ct).decode("ascii")}
        self._save(doc)

    def get(self, name: str) -> str:
        """Return the decrypted value of name; SecretMissing when not set, SecretKeyError on a wrong key."""
        doc = self._load()
        entry = doc["secrets"].get(name)
        if entry is None:
            raise SecretMissing(f"secret {name!r} is not set: run `edge secrets set {name}`")
        key = self._load_key(create=False)
        self._check_key(doc, key)
        try:
            nonce = base64.b64decode(entry["nonce"], validate=True)
            ct = base64.b64decode(entry["ct"], validate=True)
            plain = AESGCM(key).decrypt(nonce, ct, AAD_PREFIX + name.encode("ascii"))
        except InvalidTag:
            raise SecretKeyError(f"secret {name!r} cannot be decrypted with {self.key_file}: wrong key file "
                                 f"or {self.path} was modified") from None
        except (KeyError, TypeError, binascii.Error, ValueError):
            raise SecretError(f"secret {name!r} in {self.path} is damaged") from None
        return plain.decode("utf-8")

    def delete(self, name: str) -> bool:
        """Remove name; return False when it was not set."""
        doc = self._load()
        if name not in doc["secrets"]:
            return False
        del doc["secrets"][name]
        self._save(doc)
        return True


def _references(data: Any, path: str) -> list[tuple[str, str]]:
    """Return (config path, secret name) for every `secret:NAME` string in data."""
    if isinstance(data, str):
        return [(path, data[len(SECRET_PREFIX):])] if data.startswith(SECRET_PREFIX) else []
    found: list[tuple[str, str]] = []
    if isinstance(data, Mapping):
        for k, v in data.items():
            found += _references(v, f"{path}.{k}" if path else str(k))
    elif isinstance(data, list | tuple):
        for i, v in enumerate(data):
            found += _references(v, f"{path}[{i}]")
    return found


def _replace(data: Any, values: Mapping[str, str]) -> Any:
    if isinstance(data, str):
        return values[data[len(SECRET_PREFIX):]] if data.startswith(SECRET_PREFIX) else data
    if isinstance(data, Mapping):
        return {k: _replace(v, values) for k, v in data.items()}
    if isinstance(data, list):
        return [_replace(v, values) for v in data]
    if isinstance(data, tuple):
        return tuple(_replace(v, values) for v in data)
    return data


def resolve_secrets(data: Any, data_dir: str) -> Any:
    """Return a copy of a parsed config with every `secret:NAME` string replaced by the secret's value.

    The key file is `[secrets] key_file` from data when present (relative to data_dir), else the default.
    Raises SecretMissing naming every missing secret and where the config refers to it, SecretKeyError
    when the key file is missing or wrong. Without any reference, nothing is read.
    """
    refs = _references(data, "")
    if not refs:
        return data
    configured = None
    if isinstance(data, Mapping) and isinstance(data.get("secrets"), Mapping):
        kf = data["secrets"].get("key_file")
        configured = kf if isinstance(kf, str) else None
    store = SecretStore(data_dir, key_file=secret_key_file(data_dir, configured))
    for path, name in refs:
        if not NAME_RE.fullmatch(name):
            raise SecretError(f"{path}: {SECRET_PREFIX}{name} is not a valid secret reference "
                              "(names use 1-64 of A-Z a-z 0-9 . _ -)")
    stored = set(store.names())
    missing = [(p, n) for p, n in refs if n not in stored]
    if missing:
        where = "; ".join(f"{p} refers to secret {n!r}" for p, n in missing)
        names = " ".join(sorted({n for _, n in missing}))
        raise SecretMissing(f"secrets not set: {where} (set with `edge secrets set NAME` for: {names})")
    values = {n: store.get(n) for n in {n for _, n in refs}}
    return _replace(data, values)
