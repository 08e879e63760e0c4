"""Fixtures for the OPC-UA tests: session-wide asyncua servers (start-up costs ~1.7 s each)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opcua_peers import ServerProcess, make_server_pki


@pytest.fixture(scope="session")
def plain_server() -> Iterator[ServerProcess]:
    """One unsecured test server for the whole session (start-up costs ~1.7 s); it allows 10 nodes per Read."""
    server = ServerProcess(None, "--max-nodes-per-read", "10").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def secure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One test server offering only Basic256Sha256 / Aes128_Sha256_RsaOaep, user 'operator'/'secret'."""
    cert, key = make_server_pki(tmp_path_factory.mktemp("server-pki"))
    server = ServerProcess(None, "--cert", str(cert), "--key", str(key), "--user", "operator:secret").start()
    server.cert = cert  # type: ignore[attr-defined]
    yield server
    server.stop()
