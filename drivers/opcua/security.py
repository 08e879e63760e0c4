"""Secures an asyncua Client for a device: security policy and mode, trust check, user token."""

from __future__ import annotations

from asyncua import Client, ua
from asyncua.crypto import security_policies
from asyncua.crypto.uacrypto import x509_from_der
from cryptography.hazmat.primitives import serialization

from drivers.opcua.config import OpcuaDevice
from drivers.opcua.pki import Pki, default_application_uri, resolve_pki_dir

PRODUCT_URI = "urn:edge:opcua-client"
APPLICATION_NAME = "edge"

_POLICY_CLASSES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
}


class SecuritySetupError(Exception):
    """The server offers no endpoint for the configured security, or our certificate could not be set up."""


def device_pki(device: OpcuaDevice) -> Pki:
    """The PKI folder of a device (`pki_dir` resolved against $EDGE_DATA_DIR or the working directory)."""
    return Pki(resolve_pki_dir(device.pki_dir))


async def secure(client: Client, device: OpcuaDevice) -> None:
    """Apply the device's security, trust check and user token to an unconnected client.

    For a secured policy this fetches the endpoints over an unsecured channel (a GetEndpoints call, no
    session), refuses an untrusted server certificate (UntrustedServerCertificate, saved in `rejected/`),
    and loads our application instance certificate (generated on first use).
    """
    client.application_uri = device.application_uri or default_application_uri()
    client.product_uri = PRODUCT_URI
    client.name = client.description = f"{APPLICATION_NAME} {device.name}"
    pki = device_pki(device)
    chosen = device.security_policy
    if chosen is not None:
        policy_name, mode_name = chosen
        policy = _POLICY_CLASSES[policy_name]
        mode = getattr(ua.MessageSecurityMode, mode_name)
        endpoints = await client.connect_and_get_server_endpoints()
        endpoint = _matching_endpoint(endpoints, policy.URI, mode)
        if endpoint is None:
            offered = sorted(
                {f"{e.SecurityPolicyUri.rpartition('#')[2]},{e.SecurityMode.name}" for e in endpoints}
            )
            raise SecuritySetupError(
                f"{device.url} offers no endpoint with security {device.security!r}; "
                f"it offers: {', '.join(offered)}"
            )
        server_der = bytes(endpoint.ServerCertificate or b"")
        if not server_der:
            raise SecuritySetupError(f"{device.url} sent no certificate for security {device.security!r}")
        server_cert = x509_from_der(server_der)
        pki.check_server(device.url, server_cert.public_bytes(serialization.Encoding.DER))
        cert_path, key_path = pki.ensure_own_certificate(client.application_uri)
        await client.set_security(
            policy,
            str(cert_path),
            str(key_path),
            server_certificate=server_cert.public_bytes(serialization.Encoding.DER),
            mode=mode,
        )
    if device.username is not None:
        client.set_user(device.username)
        client.set_password(device.password or "")
    if device.user_certificate is not None and device.user_private_key is not None:
        await client.load_client_certificate(str(pki.root / device.user_certificate))
        await client.load_private_key(pki.root / device.user_private_key)


def _matching_endpoint(
    endpoints: list[ua.EndpointDescription], policy_uri: str, mode: ua.MessageSecurityMode
) -> ua.EndpointDescription | None:
    for ep in endpoints:
        if ep.SecurityPolicyUri == policy_uri and ep.SecurityMode == mode:
            return ep
    return None
