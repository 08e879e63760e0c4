"""`edge discover --opcua URL`: the address space browsed into ready-to-use point descriptions."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from opcua_peers import ServerProcess, free_port

from drivers.opcua.config import OpcuaPoint
from drivers.opcua.discover import browse


async def test_browse_lists_variables_with_type_value_and_address(plain_server: ServerProcess) -> None:
    found = {f["browse_path"]: f for f in await browse(plain_server.url, 2.0)}
    double = found["2:Line1/2:Double"]
    assert double["node"] == "ns=2;s=Line1.Double" and double["data_type"] == "Double"
    assert isinstance(double["value"], float) and double["writable"] is False
    assert found["2:Line1/2:Counter"]["node"] == "ns=2;i=1001"
    assert found["2:Line1/2:Int32Array"]["data_type"] == "Int32[]"
    assert found["2:Line1/2:Setpoint"]["writable"] is True
    assert found["2:Line1/2:Bad"]["value"] is None and found["2:Line1/2:Bad"]["status"] == "BadSensorFailure"
    assert not [f for f in found.values() if f["node"].startswith("i=")], "namespace 0 is skipped"
    for f in found.values():  # every result is usable as a point, by node or by browse path
        OpcuaPoint(name="p", node=f["node"])
        OpcuaPoint(name="p", browse_path=f["browse_path"])


async def test_browse_is_depth_and_count_limited(plain_server: ServerProcess) -> None:
    assert await browse(plain_server.url, 2.0, max_depth=1) == []  # variables sit two levels down
    assert len(await browse(plain_server.url, 2.0, max_nodes=5)) <= 5


async def test_unreachable_server_is_an_os_error() -> None:
    with pytest.raises(OSError):
        await browse(f"opc.tcp://127.0.0.1:{free_port()}/", 1.0)


def test_edge_discover_opcua_cli(plain_server: ServerProcess) -> None:
    cli = pytest.importorskip("edge.cli").cli
    result = CliRunner().invoke(cli, ["discover", "--opcua", plain_server.url, "--json"])
    assert result.exit_code == 0, result.output
    assert "ns=2;s=Line1.Double" in {f["node"] for f in json.loads(result.output)}
