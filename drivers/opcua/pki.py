"""The OPC-UA PKI folder: our application instance certificate, and the trusted/rejected server certificates.

Pure `cryptography`, no asyncua, so the CLI (`edge opcua trust|rejected`) stays fast. Layout under `pki_dir`:
`own/cert.der` + `own/key.pem` (0600), `trusted/` (accepted server certificates), `rejected/` (refused ones).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drivers.opcua.paths import resolve_pki_dir

KEY_BITS = 2048
CERT_VALIDITY = dt.timedelta(days=5 * 365)
CERT_RENEW_BEFORE = dt.timedelta(days=30)
"""A certificate this close to expiry is regenerated on the next start."""
KEY_FILE_MODE = 0o600
CERT_SUFFIXES = (".der", ".pem", ".crt", ".cer")


class UntrustedServerCertificate(Exception):
    """The server presented a certificate that is not in `trusted/`; it was saved to `rejected/`."""

    def __init__(self, url: str, cert: x509.Certificate, saved: Path) -> None:
        self.saved = saved
        super().__init__(
            f"server certificate of {url} is not trusted (subject {cert.subject.rfc4514_string()}, "
            f"SHA-256 {fingerprint(cert)}); refused and saved to {saved}; "
            f"accept it with: edge opcua trust {saved}"
        )


def default_application_uri() -> str:
    """The appliance's OPC-UA application URI: urn:<hostname>:edge."""
    return f"urn:{socket.gethostname()}:edge"


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint, colon-separated hex (what server admins compare)."""
    return cert.fingerprint(hashes.SHA256()).hex(":")


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _safe_name(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else "server"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", cn)[:48] or "server"


def _cert_file_name(cert: x509.Certificate) -> str:
    return f"{_safe_name(cert)}_{cert.fingerprint(hashes.SHA256()).hex()[:16]}.der"


@dataclass(frozen=True)
class CertificateInfo:
    """A certificate file in the PKI, as listed by `edge opcua rejected`."""

    path: Path
    subject: str
    fingerprint: str
    not_after: str


@dataclass(frozen=True)
class Pki:
    """One PKI folder (shared by all OPC-UA devices with the same `pki_dir`)."""

    root: Path

    @property
    def own_cert(self) -> Path:
        return self.root / "own" / "cert.der"

    @property
    def own_key(self) -> Path:
        return self.root / "own" / "key.pem"

    @property
    def trusted_dir(self) -> Path:
        return self.root / "trusted"

    @property
    def rejected_dir(self) -> Path:
        return self.root / "rejected"

    # -- our own certificate ---------------------------------------------------------------------

    def ensure_own_certificate(self, application_uri: str) -> tuple[Path, Path]:
        """The (cert, key) paths, generating them first if missing, expiring or made for another URI."""
        if self.own_cert.exists() and self.own_key.exists() and self._own_cert_fits(application_uri):
            return self.own_cert, self.own_key
        self.own_cert.parent.mkdir(parents=True, exist_ok=True)
        key = self._load_or_make_key()
        cert = make_certificate(key, application_uri)
        self.own_cert.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        return self.own_cert, self.own_key

    def _own_cert_fits(self, application_uri: str) -> bool:
        try:
            cert = load_certificate(self.own_cert.read_bytes())
            uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.UniformResourceIdentifier
            )
        except (ValueError, x509.ExtensionNotFound):
            return False
        fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > CERT_RENEW_BEFORE
        return application_uri in uris and fresh

    def _load_or_make_key(self) -> rsa.RSAPrivateKey:
        if self.own_key.exists():
            key = serialization.load_pem_private_key(self.own_key.read_bytes(), password=None)
            if isinstance(key, rsa.RSAPrivateKey):
                os.chmod(self.own_key, KEY_FILE_MODE)
                return key
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(self.own_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
        os.fchmod(fd, KEY_FILE_MODE)  # before the key is written: an existing file keeps its old mode otherwise
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return key

    # -- server certificates ---------------------------------------------------------------------

    def _certs_in(self, folder: Path) -> list[tuple[Path, x509.Certificate]]:
        found = []
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in CERT_SUFFIXES:
                    try:
                        found.append((path, load_certificate(path.read_bytes())))
                    except ValueError:
                        continue
        return found

    def is_trusted(self, cert: x509.Certificate) -> bool:
        """True when exactly this certificate is in `trusted/`."""
        return any(c == cert for _, c in self._certs_in(self.trusted_dir))

    def check_server(self, url: str, der: bytes) -> x509.Certificate:
        """Return the server certificate if trusted; else save it to `rejected/` and refuse it."""
        cert = load_certificate(der)
        if self.is_trusted(cert):
            return cert
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        saved = self.rejected_dir / _cert_file_name(cert)
        saved.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        raise UntrustedServerCertificate(url, cert, saved)

    def trust(self, source: Path) -> Path:
        """Copy a certificate (PEM or DER) into `trusted/`, drop it from `rejected/`; returns the new path."""
        cert = load_certificate(source.read_bytes())
        self.trusted_dir.mkdir(parents=True, exist_ok=True)
        target = self.trusted_dir / _cert_file_name(cert)
        target.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        for path, c in self._certs_in(self.rejected_dir):
            if c == cert:
                path.unlink(missing_ok=True)
        return target

    def listed(self, folder: Path) -> list[CertificateInfo]:
        """The certificates in one of the folders."""
        return [
            CertificateInfo(path, c.subject.rfc4514_string(), fingerprint(c), c.not_valid_after_utc.isoformat())
            for path, c in self._certs_in(folder)
        ]


def make_certificate(
    key: rsa.RSAPrivateKey,
    application_uri: str,
    *,
    hostnames: list[str] | None = None,
    server: bool = False,
) -> x509.Certificate:
    """A self-signed OPC-UA application instance certificate: URI SAN = application URI, DNS/IP SANs."""
    host = socket.gethostname()
    names = hostnames or [host, "localhost"]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"edge@{host}" if not server else f"server@{host}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edge"),
        ]
    )
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    sans += [x509.DNSName(n) for n in dict.fromkeys(names)]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


__all__ = ["CertificateInfo", "Pki", "UntrustedServerCertificate", "make_certificate", "resolve_pki_dir"]
