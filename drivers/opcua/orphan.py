"""A session our side dropped while the server may still hold it, and closing it from a new connection.

When a connection dies without the server closing it (network cut, hung server), CloseSession cannot reach
the server, which keeps the session until its timeout. Reconnecting with a fresh session would then leave
two sessions of ours on the server (more after repeated cuts, until BadTooManySessions). Before opening a
new session we therefore re-activate the old one on a new channel (OPC-UA Part 4 §5.6.3 allows this to its
owner) and close it. asyncua keeps the token, the last server nonce and the user token policies on the Client;
reading them needs its private attributes, hence the pinned asyncua version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from asyncua import Client, ua

from drivers.opcua.config import OpcuaDevice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrphanedSession:
    """What it takes to re-activate a session: its token, the last server nonce, the user token policies."""

    token: ua.NodeId
    nonce: bytes | None
    policy_ids: list[ua.UserTokenPolicy]
    since: float  # monotonic time it was left

    @classmethod
    def left_by(cls, client: Client) -> OrphanedSession | None:
        """The session of a client whose connection died with the server side possibly still open."""
        session = client.uaclient.session
        if not session.has_session:
            return None
        return cls(
            session.authentication_token,
            client._server_nonce,  # asyncua 2.1.0 private: the nonce ActivateSession must sign
            list(client._policy_ids),  # asyncua 2.1.0 private: the endpoint's user token policies
            time.monotonic(),
        )

    def expired(self, session_timeout: float) -> bool:
        """The server has dropped it by now anyway."""
        return time.monotonic() - self.since > session_timeout


async def close_orphan(reclaimer: Client, orphan: OrphanedSession, device: OpcuaDevice, timeout: float) -> bool:
    """Re-activate `orphan` on `reclaimer`'s new channel and close it. `reclaimer` must be secured, unconnected.

    Returns True when the server had it (now closed), False when the server no longer knows it.
    Raises OSError/TimeoutError when the server cannot be reached (try again at the next reconnect).
    """
    try:
        async with asyncio.timeout(timeout):
            await reclaimer.connect_socket()
            await reclaimer.send_hello()
            await reclaimer.open_secure_channel()
            reclaimer.uaclient.session.restore_authentication_token(orphan.token)
            reclaimer._server_nonce = orphan.nonce  # type: ignore[assignment]  # annotated None in asyncua
            reclaimer._policy_ids = orphan.policy_ids
            try:
                await reclaimer.activate_session(
                    username=device.username, password=device.password, certificate=reclaimer.user_certificate
                )
            except ua.UaStatusCodeError as e:
                log.info("opcua %s: the old session is gone already (%s)", device.name, e)
                return False
            await reclaimer.uaclient.close_session(True)
            return True
    finally:
        reclaimer.disconnect_socket()
