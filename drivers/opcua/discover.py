"""`edge discover --opcua URL`: browse a server's address space (depth and count limited) for variables.

Each variable comes back as a dict ready to become a point: `node`, `browse_path`, `name`, `data_type`,
`value` (as a reading would carry it; None when the status is Bad), `status` and `writable`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asyncua import Client, ua

from drivers.opcua.values import plain_value, quality_of, status_name

BROWSE_BATCH = 100
"""Nodes per Browse / Read request."""
DISCOVER_SESSION_TIMEOUT = 60.0
"""Session timeout requested for a browse (the server drops the session this long after a lost connection)."""
_NODE_CLASSES = ua.NodeClass.Object | ua.NodeClass.Variable
_ATTRS = (ua.AttributeIds.DataType, ua.AttributeIds.ValueRank, ua.AttributeIds.Value, ua.AttributeIds.UserAccessLevel)


async def browse(url: str, timeout: float, max_depth: int = 4, max_nodes: int = 500) -> list[dict[str, Any]]:
    """Variables under the Objects folder, breadth first, at most `max_depth` levels and `max_nodes` nodes.

    Namespace 0 (the standard Server object with its diagnostics) is skipped: it holds nothing to poll.
    `timeout` bounds each request and the connection; the whole browse is bounded by a few of them per level.
    Raises OSError (ConnectionError, TimeoutError) when the server cannot be reached or refuses us.
    """
    client = Client(url, timeout=timeout)
    client.name = client.description = "edge discover"
    client.session_timeout = int(DISCOVER_SESSION_TIMEOUT * 1000)
    try:
        async with asyncio.timeout(timeout * 2):
            await client.connect()
    except ua.UaError as e:
        raise ConnectionError(f"{url}: {e}") from e
    try:
        return await _walk(client, max_depth, max_nodes)
    except ua.UaError as e:
        raise ConnectionError(f"{url}: browse failed: {e}") from e
    finally:
        try:
            async with asyncio.timeout(timeout):
                await client.disconnect()
        except (Exception, TimeoutError):
            client.disconnect_socket()


async def _walk(client: Client, max_depth: int, max_nodes: int) -> list[dict[str, Any]]:
    level: list[tuple[ua.NodeId, str]] = [(ua.NodeId(ua.Int32(ua.ObjectIds.ObjectsFolder)), "")]
    seen: set[ua.NodeId] = {level[0][0]}
    variables: list[tuple[ua.NodeId, str, str]] = []  # node id, browse path, display name
    visited = 0
    for _ in range(max_depth):
        next_level: list[tuple[ua.NodeId, str]] = []
        for start in range(0, len(level), BROWSE_BATCH):
            chunk = level[start : start + BROWSE_BATCH]
            for (_, parent_path), refs in zip(chunk, await _browse(client, [n for n, _ in chunk]), strict=True):
                for ref in refs:
                    nid = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex, ref.NodeId.NodeIdType)
                    if nid in seen or nid.NamespaceIndex == 0 or visited >= max_nodes:
                        continue
                    seen.add(nid)
                    visited += 1
                    qn = ref.BrowseName
                    path = f"{parent_path}/{qn.NamespaceIndex}:{qn.Name}".lstrip("/")
                    if ref.NodeClass == ua.NodeClass.Variable:
                        variables.append((nid, path, ref.DisplayName.Text or qn.Name))
                    next_level.append((nid, path))
        level = next_level
        if not level or visited >= max_nodes:
            break
    return await _describe(client, variables)


async def _browse(client: Client, nodes: list[ua.NodeId]) -> list[list[ua.ReferenceDescription]]:
    params = ua.BrowseParameters()
    for nid in nodes:
        desc = ua.BrowseDescription()
        desc.NodeId = nid
        desc.BrowseDirection = ua.BrowseDirection.Forward
        desc.ReferenceTypeId = ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences))
        desc.IncludeSubtypes = True
        desc.NodeClassMask = ua.UInt32(_NODE_CLASSES)
        desc.ResultMask = ua.UInt32(ua.BrowseResultMask.All)
        params.NodesToBrowse.append(desc)
    out: list[list[ua.ReferenceDescription]] = []
    for result in await client.uaclient.browse(params):
        refs = list(result.References)
        cp = result.ContinuationPoint
        while cp:
            nxt = ua.BrowseNextParameters()
            nxt.ContinuationPoints = [cp]
            more = (await client.uaclient.browse_next(nxt))[0]
            refs.extend(more.References)
            cp = more.ContinuationPoint
        out.append(refs)
    return out


def _type_name(data_type: Any, value_rank: Any, value: Any) -> str:
    name = str(data_type)
    if isinstance(data_type, ua.NodeId):
        name = data_type.to_string()
        if data_type.NamespaceIndex == 0 and isinstance(data_type.Identifier, int):
            name = ua.ObjectIdNames.get(data_type.Identifier, name)
    array = (isinstance(value_rank, int) and value_rank >= 1) or isinstance(value, list)
    return f"{name}[]" if array else name


def _raw(dv: ua.DataValue) -> Any:
    return dv.Value.Value if dv.Value is not None else None


async def _describe(client: Client, variables: list[tuple[ua.NodeId, str, str]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(variables), BROWSE_BATCH):
        chunk = variables[start : start + BROWSE_BATCH]
        params = ua.ReadParameters()
        for nid, _, _ in chunk:
            for attr in _ATTRS:
                rv = ua.ReadValueId()
                rv.NodeId = nid
                rv.AttributeId = attr
                params.NodesToRead.append(rv)
        results = await client.uaclient.read(params)
        for i, (nid, path, name) in enumerate(chunk):
            dtype, rank, value, access = results[i * len(_ATTRS) : (i + 1) * len(_ATTRS)]
            good = quality_of(value.StatusCode) != "bad"
            access_bits = access.Value.Value if access.Value is not None else 0
            found.append(
                {
                    "node": nid.to_string(),
                    "browse_path": path,
                    "name": name,
                    "data_type": _type_name(_raw(dtype), _raw(rank), _raw(value)),
                    "value": plain_value(_raw(value)) if good else None,
                    "status": status_name(value.StatusCode),
                    "writable": isinstance(access_bits, int) and bool(access_bits & ua.AccessLevelType.CurrentWrite),
                }
            )
    return found
