"""Security commands: `edge keys init|show`, `edge secrets set|list|delete` and `edge verify`.

They read only the `[edge]` and `[secrets]` tables of the config (not the full model), so they work before
the rest of the config is valid and before the secrets it refers to exist.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from edge.identity import IdentityError, describe, init_keys, key_files
from edge.secrets import SecretError, SecretStore, check_name, secret_key_file
from edge.signing import PublicKeyError, fingerprint, load_public_key, verify_payload

__all__ = ["keys", "secrets", "verify"]

CONFIG_ENV = "EDGE_CONFIG"
DEFAULT_CONFIG = "/etc/edge/edge.toml"
DEFAULT_DATA_DIR = "/var/lib/edge"
EXIT_USER_ERROR = 1
EXIT_RUNTIME_FAILURE = 2
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
DENIED_HINT = "permission denied (run as root or as the data dir's owner)"


class RuntimeFailure(click.ClickException):
    """A failure that is not the user's input (exit code 2)."""

    exit_code = EXIT_RUNTIME_FAILURE


@dataclass(frozen=True)
class Settings:
    """What the security commands need from the config."""

    config: Path | None
    edge_id: str | None
    data_dir: Path
    secrets_key_file: str | None


def load_settings(config: str | None, data_dir: str | None) -> Settings:
    """Read `[edge] id`, `[edge] data_dir` and `[secrets] key_file` from the config, if there is one."""
    explicit = config or os.environ.get(CONFIG_ENV)
    path: Path | None = Path(explicit) if explicit else Path(DEFAULT_CONFIG)
    doc: dict[str, Any] = {}
    if path is not None and path.exists():
        try:
            with path.open("rb") as f:
                doc = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise click.ClickException(f"{path}: {e}") from None
        except PermissionError:
            raise click.ClickException(f"cannot read {path}: permission denied") from None
    elif explicit:
        raise click.ClickException(f"config file {path} does not exist")
    else:
        path = None
    edge = doc.get("edge")
    edge = edge if isinstance(edge, dict) else {}
    sec = doc.get("secrets")
    sec = sec if isinstance(sec, dict) else {}
    edge_id = edge.get("id")
    key_file = sec.get("key_file")
    if data_dir:
        chosen = Path(data_dir)
    else:  # like the daemon: a relative data_dir is relative to the config file's folder
        chosen = Path(str(edge.get("data_dir") or DEFAULT_DATA_DIR)).expanduser()
        if not chosen.is_absolute() and path is not None:
            chosen = path.resolve().parent / chosen
    return Settings(path, edge_id if isinstance(edge_id, str) else None, chosen,
                    key_file if isinstance(key_file, str) else None)


def _config_options(f: Any) -> Any:
    f = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="Data directory (default: [edge] data_dir of the config, else /var/lib/edge).")(f)
    f = click.option("-c", "--config", type=click.Path(dir_okay=False), default=None,
                     help="Config file (default: $EDGE_CONFIG, else /etc/edge/edge.toml if present).")(f)
    return f


# -- keys ----------------------------------------------------------------------------------------------
@click.group()
def keys() -> None:
    """The appliance's signing key and TLS key/CSR."""


@keys.command("init")
@_config_options
@click.option("--edge-id", default=None, help="Edge id for the CSR (default: [edge] id of the config).")
@click.option("--force", is_flag=True, help="Replace existing keys (a new identity: receivers must be told).")
def keys_init(config: str | None, data_dir: str | None, edge_id: str | None, force: bool) -> None:
    """Create the signing key, TLS key and CSR that are missing (idempotent)."""
    s = load_settings(config, data_dir)
    chosen_id = edge_id or s.edge_id
    if not chosen_id:
        raise click.ClickException("no edge id: give --edge-id or set [edge] id in the config")
    try:
        result = init_keys(s.data_dir, chosen_id, force=force)
        info = describe(s.data_dir)
    except PermissionError as e:
        raise RuntimeFailure(f"{e.filename}: {DENIED_HINT}") from None
    except IdentityError as e:
        raise RuntimeFailure(str(e)) from None
    for p in result.created:
        click.echo(f"created {p}")
    if not result.created:
        click.echo(f"keys already exist in {result.files.dir}")
    click.echo(f"fingerprint: {info['fingerprint']}")
    click.echo(f"public key:  {info['public_key']}")
    click.echo(f"CSR for a fleet CA: {info['csr_file']} ({info['csr_subject']})")


@keys.command("show")
@_config_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--pem", is_flag=True, help="Print the public signing key as PEM only.")
@click.option("--csr", is_flag=True, help="Print the TLS CSR (PEM) only, to hand to a fleet CA.")
def keys_show(config: str | None, data_dir: str | None, as_json: bool, pem: bool, csr: bool) -> None:
    """Print the public signing key and its fingerprint (SHA-256 of the raw key, hex)."""
    s = load_settings(config, data_dir)
    try:
        info = describe(s.data_dir)
        if csr:
            click.echo(key_files(s.data_dir).tls_csr.read_text("ascii"), nl=False)
            return
    except FileNotFoundError as e:
        raise click.ClickException(f"{e.filename} does not exist: run `edge keys init`") from None
    except PermissionError as e:
        raise RuntimeFailure(f"{e.filename}: permission denied") from None
    except IdentityError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(info, indent=2))
    elif pem:
        click.echo(info["public_key_pem"], nl=False)
    else:
        click.echo(f"alg:         {info['alg']}")
        click.echo(f"public key:  {info['public_key']}")
        click.echo(f"fingerprint: {info['fingerprint']}")
        click.echo(f"csr:         {info['csr_file']} ({info['csr_subject']})")


# -- secrets -------------------------------------------------------------------------------------------
def _store(config: str | None, data_dir: str | None, key_file: str | None) -> SecretStore:
    s = load_settings(config, data_dir)
    return SecretStore(s.data_dir, key_file=secret_key_file(s.data_dir, key_file or s.secrets_key_file))


def _secret_options(f: Any) -> Any:
    f = click.option("--key-file", default=None,
                     help="Secrets key file (default: [secrets] key_file, else <data_dir>/secrets.key).")(f)
    return _config_options(f)


@click.group()
def secrets() -> None:
    """Passwords and tokens referenced from the config as "secret:NAME"."""


@secrets.command("set")
@click.argument("name")
@_secret_options
def secrets_set(name: str, config: str | None, data_dir: str | None, key_file: str | None) -> None:
    """Store secret NAME: prompted (not echoed) on a terminal, else read from standard input."""
    try:
        check_name(name)
    except SecretError as e:
        raise click.ClickException(str(e)) from None
    if sys.stdin.isatty():
        value = click.prompt(f"value for {name}", hide_input=True, confirmation_prompt=True, err=True)
    else:
        value = sys.stdin.read()
        if value.endswith("\n"):
            value = value[:-1]
            if value.endswith("\r"):
                value = value[:-1]
    if not value:
        raise click.ClickException("empty value: nothing stored")
    store = _store(config, data_dir, key_file)
    try:
        store.set(name, value)
    except PermissionError as e:
        raise RuntimeFailure(f"{e.filename}: {DENIED_HINT}") from None
    except SecretError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"secret {name} stored in {store.path}; refer to it as \"secret:{name}\"", err=True)


@secrets.command("list")
@_secret_options
def secrets_list(config: str | None, data_dir: str | None, key_file: str | None) -> None:
    """Print the names of the stored secrets (never their values)."""
    try:
        names = _store(config, data_dir, key_file).names()
    except SecretError as e:
        raise click.ClickException(str(e)) from None
    for n in names:
        click.echo(n)


@secrets.command("delete")
@click.argument("name")
@_secret_options
def secrets_delete(name: str, config: str | None, data_dir: str | None, key_file: str | None) -> None:
    """Remove secret NAME."""
    try:
        deleted = _store(config, data_dir, key_file).delete(name)
    except PermissionError as e:
        raise RuntimeFailure(f"{e.filename}: permission denied") from None
    except SecretError as e:
        raise click.ClickException(str(e)) from None
    if not deleted:
        raise click.ClickException(f"secret {name!r} is not set")
    click.echo(f"secret {name} deleted", err=True)


# -- verify --------------------------------------------------------------------------------------------
@click.command("verify")
@click.option("--key", "key", required=True,
              help="Public key: base64 as `edge keys show` prints it, PEM, or a file holding either.")
@click.argument("payload", type=click.File("rb"), default="-")
def verify(key: str, payload: Any) -> None:
    """Check the signature of one JSON payload (a file, or standard input); exit 0 valid, 1 not."""
    try:
        public = load_public_key(key)
    except (PublicKeyError, ValueError, OSError) as e:
        raise click.ClickException(f"--key: {e}") from None
    data = payload.read(MAX_PAYLOAD_BYTES + 1)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise click.ClickException(f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise click.ClickException(f"payload is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise click.ClickException("payload is not a JSON object")
    sig = doc.get("sig")
    if not isinstance(sig, dict):
        raise click.ClickException("payload has no sig field (is signing on for this sink: sign = true?)")
    if sig.get("key") != fingerprint(public):
        raise click.ClickException(f"signed by key {sig.get('key')}, not by the given key "
                                   f"{fingerprint(public)}")
    if not verify_payload(doc, public):
        raise click.ClickException("signature INVALID: the payload was changed or not signed by this key")
    click.echo(f"signature valid: signed by {fingerprint(public)}")
