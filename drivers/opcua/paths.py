"""Where the OPC-UA driver keeps files: the PKI folder, resolved against the appliance's data directory."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "EDGE_DATA_DIR"
DEFAULT_PKI_DIR = "pki/opcua"


def resolve_pki_dir(pki_dir: str | None = None, data_dir: Path | None = None) -> Path:
    """An absolute PKI folder: relative paths are against `data_dir`, else $EDGE_DATA_DIR, else the working dir."""
    path = Path(pki_dir or DEFAULT_PKI_DIR)
    if path.is_absolute():
        return path
    if data_dir is None:
        env = os.environ.get(DATA_DIR_ENV)
        data_dir = Path(env) if env else Path.cwd()
    return data_dir / path
