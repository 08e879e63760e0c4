"""A real asyncua server for the OPC-UA tests and bench: every supported type, changing on a timer.

Run as a process: `python opcua_testserver.py --port P [--cert C --key K] [--user U:P] [--items N]`.
It prints `READY <url>` when serving and `SESSIONS <n> <name|name…>` whenever the sessions change, so
tests can count our sessions server-side. Writing True to `ns=2;s=Test.Stall` stops every subscription
that exists at that moment from publishing (no data, no keep-alives): a silent subscription.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import math
import sys
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_session import InternalSession
from asyncua.server.user_managers import UserManager

NAMESPACE = "urn:edge:test"
SERVER_URI = "urn:edge:test-server"
UPDATE_PERIOD = 0.1
SESSION_POLL = 0.02
FIXED_SOURCE_TIME = dt.datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
NULL_TIME = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)  # OPC-UA's null DateTime: encoded as 0 on the wire


class OneUser(UserManager):
    """Accepts one username/password, and any X.509 user token (asyncua checks its signature)."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is not None:  # a user name token (the channel's certificate comes along too)
            return User(role=UserRole.User, name=username) if (username, password) == (self.username,
                                                                                         self.password) else None
        if certificate is not None:  # an X.509 user token
            return User(role=UserRole.User, name="certificate-user")
        return None


# name -> (variant type, initial value, function of tick)
SCALARS: dict[str, tuple[ua.VariantType, Any]] = {
    "Double": (ua.VariantType.Double, lambda n: round(math.sin(n / 10) * 100, 3)),
    "Float": (ua.VariantType.Float, lambda n: n * 0.5),
    "SByte": (ua.VariantType.SByte, lambda n: (n % 200) - 100),
    "Byte": (ua.VariantType.Byte, lambda n: n % 256),
    "Int16": (ua.VariantType.Int16, lambda n: -n),
    "UInt16": (ua.VariantType.UInt16, lambda n: n % 65536),
    "Int32": (ua.VariantType.Int32, lambda n: -100000 - n),
    "UInt32": (ua.VariantType.UInt32, lambda n: 100000 + n),
    "Int64": (ua.VariantType.Int64, lambda n: -(2**40) - n),
    "UInt64": (ua.VariantType.UInt64, lambda n: 2**40 + n),
    "Boolean": (ua.VariantType.Boolean, lambda n: (n // 3) % 2 == 0),  # not a divisor of 2 ticks
    "String": (ua.VariantType.String, lambda n: f"tick-{n}"),
    "DateTime": (ua.VariantType.DateTime, lambda n: dt.datetime.now(dt.UTC)),
    "ByteString": (ua.VariantType.ByteString, lambda n: bytes([n % 256, 1, 2])),
}
ARRAYS: dict[str, tuple[ua.VariantType, Any]] = {
    "DoubleArray": (ua.VariantType.Double, lambda n: [n * 1.0, n + 0.5, -1.25]),
    "Int32Array": (ua.VariantType.Int32, lambda n: [n, n + 1, n + 2]),
    "StringArray": (ua.VariantType.String, lambda n: ["a", f"n{n}"]),
}


async def build(port: int, cert: str | None, key: str | None, user: str | None, items: int,
                max_nodes_per_read: int = 0, max_monitored_items_per_call: int = 0) -> Server:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/edge/")
    server.set_server_name("edge test server")
    await server.set_application_uri(SERVER_URI)
    if cert and key:
        server.set_security_policy([
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ua.SecurityPolicyType.Basic256Sha256_Sign,
            ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
            ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
        ])
        await server.load_certificate(cert)
        await server.load_private_key(key)
    if user:
        name, _, password = user.partition(":")
        server.iserver.user_manager = OneUser(name, password)
        server.set_identity_tokens([ua.UserNameIdentityToken, ua.X509IdentityToken])
    if max_nodes_per_read:
        limit = server.get_node(ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead))
        await limit.write_value(ua.Variant(max_nodes_per_read, ua.VariantType.UInt32))
    if max_monitored_items_per_call:
        limit = server.get_node(
            ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall))
        await limit.write_value(ua.Variant(max_monitored_items_per_call, ua.VariantType.UInt32))
    idx = await server.register_namespace(NAMESPACE)
    assert idx == 2, idx
    objects = server.nodes.objects
    line = await objects.add_object(ua.NodeId("Line1", idx), ua.QualifiedName("Line1", idx))
    nodes: dict[str, Any] = {}
    for name, (vt, fn) in SCALARS.items():
        nodes[name] = await line.add_variable(ua.NodeId(f"Line1.{name}", idx), ua.QualifiedName(name, idx),
                                              ua.Variant(fn(0), vt))
    for name, (vt, fn) in ARRAYS.items():
        nodes[name] = await line.add_variable(ua.NodeId(f"Line1.{name}", idx), ua.QualifiedName(name, idx),
                                              ua.Variant(fn(0), vt, is_array=True))
    counter = await line.add_variable(ua.NodeId(1001, idx), ua.QualifiedName("Counter", idx),
                                      ua.Variant(0, ua.VariantType.UInt32))
    setpoint = await line.add_variable(ua.NodeId("Line1.Setpoint", idx), ua.QualifiedName("Setpoint", idx),
                                       ua.Variant(20.0, ua.VariantType.Double))
    await setpoint.set_writable()
    flags = await line.add_variable(ua.NodeId("Line1.Flags", idx), ua.QualifiedName("Flags", idx),
                                    ua.Variant([1, 2, 3], ua.VariantType.Int16, is_array=True))
    await flags.set_writable()
    uncertain = await line.add_variable(ua.NodeId("Line1.Uncertain", idx), ua.QualifiedName("Uncertain", idx),
                                        ua.Variant(1.5, ua.VariantType.Double))
    bad = await line.add_variable(ua.NodeId("Line1.Bad", idx), ua.QualifiedName("Bad", idx),
                                  ua.Variant(0.0, ua.VariantType.Double))
    stamped = await line.add_variable(ua.NodeId("Line1.Stamped", idx), ua.QualifiedName("Stamped", idx),
                                      ua.Variant(7.0, ua.VariantType.Double))
    await uncertain.write_value(ua.DataValue(ua.Variant(1.5, ua.VariantType.Double),
                                             StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)))
    await bad.write_value(ua.DataValue(ua.Variant(0.0, ua.VariantType.Double),
                                       StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure)))
    await stamped.write_value(ua.DataValue(ua.Variant(7.0, ua.VariantType.Double), SourceTimestamp=FIXED_SOURCE_TIME,
                                           ServerTimestamp=FIXED_SOURCE_TIME))
    null_stamped = await line.add_variable(ua.NodeId("Line1.NullSourceTime", idx),
                                           ua.QualifiedName("NullSourceTime", idx),
                                           ua.Variant(8.0, ua.VariantType.Double))
    # a device that sends the null source timestamp (the server stamps the time it stored the value)
    await null_stamped.write_value(ua.DataValue(ua.Variant(8.0, ua.VariantType.Double), SourceTimestamp=NULL_TIME))
    test = await objects.add_object(ua.NodeId("Test", idx), ua.QualifiedName("Test", idx))
    stall = await test.add_variable(ua.NodeId("Test.Stall", idx), ua.QualifiedName("Stall", idx),
                                    ua.Variant(False, ua.VariantType.Boolean))
    await stall.set_writable()
    bench = []
    if items:
        bench_obj = await objects.add_object(ua.NodeId("Bench", idx), ua.QualifiedName("Bench", idx))
        for i in range(items):
            bench.append(await bench_obj.add_variable(ua.NodeId(f"Bench.{i}", idx), ua.QualifiedName(f"B{i}", idx),
                                                      ua.Variant(0.0, ua.VariantType.Double)))
    server.edge_nodes = {"values": nodes, "counter": counter, "stall": stall, "bench": bench}  # type: ignore[attr-defined]
    return server


async def update_loop(server: Server) -> None:
    nodes = server.edge_nodes  # type: ignore[attr-defined]
    tick = 0
    produced = 0
    next_tick = asyncio.get_running_loop().time()
    while True:
        tick += 1
        for name, (vt, fn) in SCALARS.items():
            await nodes["values"][name].write_value(ua.Variant(fn(tick), vt))
        for name, (vt, fn) in ARRAYS.items():
            await nodes["values"][name].write_value(ua.Variant(fn(tick), vt, is_array=True))
        await nodes["counter"].write_value(ua.Variant(tick, ua.VariantType.UInt32))
        for i, node in enumerate(nodes["bench"]):
            await node.write_value(ua.Variant(float(tick * 10000 + i), ua.VariantType.Double))
        produced += len(nodes["bench"])
        if nodes["bench"]:
            print(f"PRODUCED {produced}", flush=True)
        if await nodes["stall"].read_value():
            await stall_subscriptions(server)
            await nodes["stall"].write_value(ua.Variant(False, ua.VariantType.Boolean))
        next_tick += UPDATE_PERIOD  # a fixed rate, however long the writes took
        now = asyncio.get_running_loop().time()
        if next_tick < now:
            next_tick = now  # fell behind: do not burst to catch up
        await asyncio.sleep(next_tick - now)


async def stall_subscriptions(server: Server) -> None:
    """Stop every current subscription's publishing loop: it goes silent (no data, no keep-alive)."""
    subs = server.iserver.subscription_service.subscriptions
    for sub in list(subs.values()):
        if sub.pub_request_callback is None:
            continue  # server-internal subscription
        sub._closing = True
        if sub._task is not None:
            sub._task.cancel()
            sub._task = None
        sub.has_published_results = lambda: False  # type: ignore[method-assign]
    print(f"STALLED {len(subs)}", flush=True)


_original_create_session = InternalSession.create_session


async def _named_create_session(self: InternalSession, params: ua.CreateSessionParameters,
                                sockname: Any = None) -> ua.CreateSessionResult:
    self.name = params.SessionName or str(self.name)  # the client's session name, so sessions can be told apart
    return await _original_create_session(self, params, sockname)


InternalSession.create_session = _named_create_session  # type: ignore[method-assign]


async def session_watch(server: Server) -> None:
    last: list[str] | None = None
    while True:
        names = sorted(s.name for s in server.iserver._external_sessions.values())
        if names != last:
            print(f"SESSIONS {len(names)} {'|'.join(names)}", flush=True)
            last = names
        await asyncio.sleep(SESSION_POLL)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--user")
    ap.add_argument("--items", type=int, default=0)
    ap.add_argument("--max-nodes-per-read", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    server = await build(args.port, args.cert, args.key, args.user, args.items, args.max_nodes_per_read)
    async with server:
        tasks = [asyncio.create_task(update_loop(server)), asyncio.create_task(session_watch(server))]
        print(f"READY opc.tcp://127.0.0.1:{args.port}/edge/", flush=True)
        await asyncio.gather(*tasks)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
