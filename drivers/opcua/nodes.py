"""Resolves configured point addresses to node ids on the current session (done again after every reconnect).

`ns=2;s=X` is used as is; `nsu=<uri>;s=X` is mapped to the server's current namespace index; browse paths
(`2:Line1/2:Temp`, from the Objects folder) are translated in one TranslateBrowsePathsToNodeIds call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncua import Client, ua

from drivers.opcua.config import OpcuaPoint
from drivers.opcua.values import status_name


@dataclass
class ResolvedPoints:
    """Node ids of the points that resolved, and the error of those that did not."""

    node_ids: dict[str, ua.NodeId] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _relative_path(browse_path: str) -> ua.RelativePath:
    path = ua.RelativePath()
    for element in browse_path.strip("/").split("/"):
        rpe = ua.RelativePathElement()
        rpe.ReferenceTypeId = ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences))
        rpe.IsInverse = False  # type: ignore[assignment]  # asyncua annotates Boolean, a marker class
        rpe.IncludeSubtypes = True  # type: ignore[assignment]
        rpe.TargetName = ua.QualifiedName.from_string(element)
        path.Elements.append(rpe)
    return path


def _split_nsu(node: str) -> tuple[str, str]:
    uri, _, rest = node[len("nsu=") :].partition(";")
    return uri, rest


async def resolve(client: Client, points: list[OpcuaPoint]) -> ResolvedPoints:
    """Node ids for every point on this session; unresolved points get an error naming the status."""
    out = ResolvedPoints()
    namespaces: list[str] | None = None
    by_path: list[OpcuaPoint] = []
    for p in points:
        if p.node is None:
            by_path.append(p)
            continue
        if p.node.startswith("nsu="):
            if namespaces is None:
                namespaces = list(await client.get_namespace_array())
            uri, rest = _split_nsu(p.node)
            if uri not in namespaces:
                out.errors[p.name] = f"BadNodeIdUnknown: namespace {uri!r} not on the server"
                continue
            node_id = ua.NodeId.from_string(f"ns={namespaces.index(uri)};{rest}")
        else:
            node_id = ua.NodeId.from_string(p.node)
        out.node_ids[p.name] = node_id
    if by_path:
        requests = []
        for p in by_path:
            bp = ua.BrowsePath()
            bp.StartingNode = ua.NodeId(ua.Int32(ua.ObjectIds.ObjectsFolder))
            bp.RelativePath = _relative_path(p.browse_path or "")
            requests.append(bp)
        results = await client.uaclient.translate_browsepaths_to_nodeids(requests)
        for p, result in zip(by_path, results, strict=True):
            if result.StatusCode.is_good() and result.Targets:
                target = result.Targets[0].TargetId
                out.node_ids[p.name] = ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)
            else:
                out.errors[p.name] = f"{status_name(result.StatusCode)}: browse path {p.browse_path}"
    return out
