"""`edge opcua …`: list refused server certificates and trust one (no asyncua import, so the CLI stays fast)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from drivers.opcua.paths import DEFAULT_PKI_DIR, resolve_pki_dir

if TYPE_CHECKING:
    from drivers.opcua.pki import Pki

PKI_HELP = f"the OPC-UA PKI folder (default: {DEFAULT_PKI_DIR} under $EDGE_DATA_DIR, else the working directory)"


def _pki(pki_dir: str | None) -> Pki:
    from drivers.opcua.pki import Pki  # cryptography only when a command runs

    return Pki(resolve_pki_dir(pki_dir))


@click.group("opcua")
def opcua() -> None:
    """OPC-UA certificates: what servers were refused, and trusting them."""


@opcua.command("rejected")
@click.option("--pki-dir", help=PKI_HELP)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per certificate")
def rejected(pki_dir: str | None, as_json: bool) -> None:
    """List server certificates that were refused (accept one with `edge opcua trust FILE`)."""
    _list(_pki(pki_dir).rejected_dir, _pki(pki_dir), as_json)


@opcua.command("trusted")
@click.option("--pki-dir", help=PKI_HELP)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per certificate")
def trusted(pki_dir: str | None, as_json: bool) -> None:
    """List the trusted server certificates."""
    _list(_pki(pki_dir).trusted_dir, _pki(pki_dir), as_json)


def _list(folder: Path, pki: Pki, as_json: bool) -> None:
    for info in pki.listed(folder):
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "file": str(info.path),
                        "subject": info.subject,
                        "sha256": info.fingerprint,
                        "not_after": info.not_after,
                    }
                )
            )
        else:
            click.echo(
                f"{info.path}\n  subject: {info.subject}\n  sha256:  {info.fingerprint}\n  expires: {info.not_after}"
            )


@opcua.command("trust")
@click.argument("file")
@click.option("--pki-dir", help=PKI_HELP)
def trust(file: str, pki_dir: str | None) -> None:
    """Trust a server certificate: FILE is a path, or a file name in rejected/."""
    pki = _pki(pki_dir)
    source = Path(file)
    if not source.exists() and (pki.rejected_dir / file).exists():
        source = pki.rejected_dir / file
    if not source.is_file():
        raise click.UsageError(f"{file}: no such certificate file (see `edge opcua rejected`)")
    from drivers.opcua.pki import load_certificate

    try:
        cert = load_certificate(source.read_bytes())
    except ValueError as e:
        raise click.UsageError(f"{file}: not a PEM or DER certificate ({e})") from e
    target = pki.trust(source)
    click.echo(f"trusted {cert.subject.rfc4514_string()} -> {target}")
