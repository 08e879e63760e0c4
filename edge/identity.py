"""The appliance's identity: its Ed25519 signing key and its ECDSA P-256 TLS key with a CSR for a fleet CA.

Keys live in ``<data_dir>/keys/`` with mode 0600 (the folder 0700): ``signing.key`` / ``signing.pub``
(PEM), ``tls.key`` (PEM) and ``tls.csr`` (PEM, subject CN = edge id, SAN URI ``urn:edge:<id>``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.files import write_private
from edge.signing import fingerprint, public_key_b64, sign_payload

__all__ = [
    "EDGE_URN_PREFIX",
    "IdentityError",
    "KeyFiles",
    "KeysMissing",
    "init_keys",
    "key_files",
    "load_csr",
    "load_public_signing_key",
    "load_signing_key",
    "make_csr",
    "write_private",
]

KEYS_DIR = "keys"
SIGNING_KEY = "signing.key"
SIGNING_PUB = "signing.pub"
TLS_KEY = "tls.key"
TLS_CSR = "tls.csr"
PUBLIC_FILE_MODE = 0o644
EDGE_URN_PREFIX = "urn:edge:"


class IdentityError(Exception):
    """The appliance's keys cannot be created or read."""


class KeysMissing(IdentityError):
    """No key where one is expected (run `edge keys init`)."""


@dataclass(frozen=True)
class KeyFiles:
    """Where one appliance keeps its key material."""

    dir: Path
    signing_key: Path
    signing_pub: Path
    tls_key: Path
    tls_csr: Path


@dataclass
class InitResult:
    """What `init_keys` did: the files it wrote and the ones it left as they were."""

    files: KeyFiles
    created: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def key_files(data_dir: str | os.PathLike[str]) -> KeyFiles:
    """Return the key file paths under data_dir."""
    d = Path(data_dir) / KEYS_DIR
    return KeyFiles(d, d / SIGNING_KEY, d / SIGNING_PUB, d / TLS_KEY, d / TLS_CSR)


def make_csr(tls_key: ec.EllipticCurvePrivateKey, edge_id: str) -> x509.CertificateSigningRequest:
    """Return a CSR for the TLS key: subject CN = edge id, SAN URI urn:edge:<id>, client+server auth."""
    uri = x509.UniformResourceIdentifier(EDGE_URN_PREFIX + edge_id)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, edge_id)]))
        .add_extension(x509.SubjectAlternativeName([uri]), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(tls_key, hashes.SHA256())
    )


def _pem_private(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _csr_edge_id(csr: x509.CertificateSigningRequest) -> str | None:
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def init_keys(data_dir: str | os.PathLike[str], edge_id: str, *, force: bool = False) -> InitResult:
    """Create whatever key material is missing (all of it with force); keep what exists.

    The CSR is rewritten (same TLS key) when it names another edge id than edge_id.
    """
    files = key_files(data_dir)
    result = InitResult(files)
    owner = Path(data_dir)
    owner.mkdir(parents=True, exist_ok=True)

    if force or not files.signing_key.exists():
        signing = Ed25519PrivateKey.generate()
        write_private(files.signing_key, _pem_private(signing), owner_like=owner)
        result.created.append(files.signing_key)
    else:
        signing = load_signing_key(data_dir)
        result.kept.append(files.signing_key)
    pub = signing.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    if not files.signing_pub.exists() or files.signing_pub.read_bytes() != pub:
        write_private(files.signing_pub, pub, owner_like=owner, mode=PUBLIC_FILE_MODE)
        result.created.append(files.signing_pub)

    if force or not files.tls_key.exists():
        tls_key: ec.EllipticCurvePrivateKey = ec.generate_private_key(ec.SECP256R1())
        write_private(files.tls_key, _pem_private(tls_key), owner_like=owner)
        result.created.append(files.tls_key)
        new_tls = True
    else:
        loaded = serialization.load_pem_private_key(files.tls_key.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise IdentityError(f"{files.tls_key}: not an EC private key")
        tls_key, new_tls = loaded, False
        result.kept.append(files.tls_key)

    if new_tls or not files.tls_csr.exists() or _csr_edge_id(load_csr(data_dir)) != edge_id:
        csr = make_csr(tls_key, edge_id)
        write_private(files.tls_csr, csr.public_bytes(serialization.Encoding.PEM), owner_like=owner,
                      mode=PUBLIC_FILE_MODE)
        result.created.append(files.tls_csr)
    else:
        result.kept.append(files.tls_csr)
    return result


def load_signing_key(data_dir: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load the appliance's Ed25519 signing key from <data_dir>/keys/signing.key."""
    path = key_files(data_dir).signing_key
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeysMissing(f"no signing key at {path}: run `edge keys init`") from None
    except PermissionError:
        raise IdentityError(f"cannot read {path}: permission denied (run as the user that owns it, "
                            "e.g. `sudo -u edge edge ...`)") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as e:
        raise IdentityError(f"{path}: not a readable PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path}: not an Ed25519 key but {type(key).__name__}")
    return key


def load_public_signing_key(data_dir: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Load the public half of the signing key (from signing.pub, or derived from signing.key)."""
    files = key_files(data_dir)
    if files.signing_pub.exists():
        key = serialization.load_pem_public_key(files.signing_pub.read_bytes())
        if isinstance(key, Ed25519PublicKey):
            return key
    return load_signing_key(data_dir).public_key()


def load_csr(data_dir: str | os.PathLike[str]) -> x509.CertificateSigningRequest:
    """Load the TLS CSR from <data_dir>/keys/tls.csr."""
    path = key_files(data_dir).tls_csr
    try:
        return x509.load_pem_x509_csr(path.read_bytes())
    except FileNotFoundError:
        raise KeysMissing(f"no CSR at {path}: run `edge keys init`") from None


def describe(data_dir: str | os.PathLike[str]) -> dict[str, str | None]:
    """Return what `edge keys show` prints: public key, fingerprint, CSR subject and the file paths."""
    files = key_files(data_dir)
    pub = load_public_signing_key(data_dir)
    csr_subject = None
    if files.tls_csr.exists():
        csr_subject = load_csr(data_dir).subject.rfc4514_string()
    return {
        "alg": "ed25519",
        "public_key": public_key_b64(pub),
        "fingerprint": fingerprint(pub),
        "public_key_pem": pub.public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii"),
        "signing_key_file": str(files.signing_key),
        "tls_key_file": str(files.tls_key) if files.tls_key.exists() else None,
        "csr_file": str(files.tls_csr) if files.tls_csr.exists() else None,
        "csr_subject": csr_subject,
    }


def payload_signer(data_dir: str | os.PathLike[str], setting: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """sign_payload bound to the appliance's key; OSError naming the setting (e.g. `api.sign`) when the key
    is unusable, so start-up or the sink's run fails with a clear reason."""
    try:
        key = load_signing_key(data_dir)
    except IdentityError as e:
        raise OSError(f"{setting} = true but the signing key is unusable: {e}") from e
    return functools.partial(sign_payload, key=key)
