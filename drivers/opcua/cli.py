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
CONFIG_HELP = "take the PKI folder from this config: its first OPC-UA device's pki_dir, under its data_dir"

pki_option = click.option("--pki-dir", help=PKI_HELP)
config_option = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)


def _pki(pki_dir: str | None, config_path: str | None = None) -> Pki:
    """--pki-dir, else the config's, else $EDGE_DATA_DIR/pki/opcua, else ./pki/opcua."""
    from drivers.opcua.pki import Pki  # cryptography only when a command runs

    if pki_dir is None and config_path is not None:
        from edge.config import ConfigError, load_config

        try:
            cfg = load_config(config_path)
        except ConfigError as e:
            raise click.UsageError(str(e)) from e
        dirs = [getattr(d, "pki_dir", None) for d in cfg.devices if getattr(d, "driver", None) == "opcua"]
        return Pki(resolve_pki_dir(dirs[0] if dirs else None, cfg.data_dir))
    return Pki(resolve_pki_dir(pki_dir))


@click.group("opcua")
def opcua() -> None:
    """OPC-UA certificates: what servers were refused, and trusting them."""


@opcua.command("rejected")
@pki_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="one JSON object per certificate")
def rejected(pki_dir: str | None, config_path: str | None, as_json: bool) -> None:
    """List server certificates that were refused (accept one with `edge opcua trust FILE`)."""
    pki = _pki(pki_dir, config_path)
    _list(pki.rejected_dir, pki, as_json)


@opcua.command("trusted")
@pki_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="one JSON object per certificate")
def trusted(pki_dir: str | None, config_path: str | None, as_json: bool) -> None:
    """List the trusted server certificates."""
    pki = _pki(pki_dir, config_path)
    _list(pki.trusted_dir, pki, as_json)


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
@pki_option
@config_option
def trust(file: str, pki_dir: str | None, config_path: str | None) -> None:
    """Trust a server certificate: FILE is a path, or a file name in rejected/.

    A FILE inside a PKI's rejected/ folder is trusted in that PKI unless --pki-dir or -c say otherwise.
    """
    source = Path(file)
    if pki_dir is None and config_path is None and source.is_file() and source.resolve().parent.name == "rejected":
        from drivers.opcua.pki import Pki

        pki = Pki(source.resolve().parent.parent)
    else:
        pki = _pki(pki_dir, config_path)
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
