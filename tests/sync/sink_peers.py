"""Real peers for the sink tests: a CA and certificates, a mosquitto broker, a paho subscriber."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
READY_TIMEOUT = 10.0  # s for a broker to accept connections
CERT_DAYS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


# -- certificates ----------------------------------------------------------------------------------------

@dataclass
class Pki:
    """A CA with a server certificate (localhost, 127.0.0.1) and a client certificate, as PEM files."""

    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # an unrelated CA: trusting it must fail


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey | None, cert: x509.Certificate | None) -> None:
    if key is not None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o644)  # mosquitto started as root reads it as user mosquitto
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
          *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                            critical=False)
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(where: Path) -> Pki:
    where.mkdir(parents=True, exist_ok=True)
    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    srv_key, cli_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    p = Pki(where, where / "ca.crt", where / "server.crt", where / "server.key", where / "client.crt",
            where / "client.key", where / "other-ca.crt")
    _write(p.ca, None, _cert("edge-test-ca", ca_key, "edge-test-ca", ca_key, ca=True))
    _write(p.other_ca, None, _cert("other-ca", other_key, "other-ca", other_key, ca=True))
    _write(p.server_key, srv_key, None)
    _write(p.server_cert, None, _cert("localhost", srv_key, "edge-test-ca", ca_key, server=True))
    _write(p.client_key, cli_key, None)
    _write(p.client_cert, None, _cert("edge-client", cli_key, "edge-test-ca", ca_key))
    return p


# -- mosquitto -------------------------------------------------------------------------------------------

@dataclass
class Broker:
    """A mosquitto on 127.0.0.1: a plain listener, and with a Pki a TLS and a client-certificate listener."""

    dir: Path
    pki: Pki | None = None
    persistence: bool = False
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    mtls_port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)  # more global config lines (acl_file, password_file…)
    proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        lines = ["per_listener_settings false", "allow_anonymous true", "log_dest stdout",
                 "log_type error", "log_type warning", "log_type notice", "max_queued_messages 0",
                 f"persistence {'true' if self.persistence else 'false'}", *self.extra,
                 f"listener {self.port} 127.0.0.1"]
        if os.geteuid() == 0:
            lines.insert(0, "user root")  # else it drops to user mosquitto, which cannot read pytest's tmp dirs
        if self.persistence:
            lines.insert(0, f"persistence_location {self.dir}/")
        if self.pki is not None:
            p = self.pki
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {p.ca}", f"certfile {p.server_cert}",
                      f"keyfile {p.server_key}",
                      f"listener {self.mtls_port} 127.0.0.1", f"cafile {p.ca}", f"certfile {p.server_cert}",
                      f"keyfile {p.server_key}", "require_certificate true"]
        return "\n".join(lines) + "\n"

    def start(self) -> Broker:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "mosquitto.conf"
        conf.write_text(self.config())
        log = open(self.dir / "mosquitto.log", "ab")  # noqa: SIM115 - kept open for the process
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_port(self.port)
        return self

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its ACL and password files."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """Stop it by its PID (SIGTERM: mosquitto saves its persistence file, if any, on the way out)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


# -- a subscriber that records every message --------------------------------------------------------------

class Subscriber:
    """A paho client subscribed at QoS 1 in a persistent session; records every reading it receives."""

    def __init__(self, port: int, topic: str = "#", client_id: str | None = None) -> None:
        self.topic = topic
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.status: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"sub-{free_port()}",
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(READY_TIMEOUT):
            raise TimeoutError("subscriber did not subscribe")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(self.topic, qos=1)
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            if msg.topic.endswith("/status"):
                self.status[msg.topic] = msg.payload
            else:
                self.messages.append((msg.topic, json.loads(msg.payload)))

    def readings(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for _, m in self.messages for r in m["readings"]]

    def seqs(self) -> list[int]:
        return [r["seq"] for r in self.readings()]

    def wait_for(self, seqs: set[int], timeout: float) -> set[int]:
        """Wait until every seq in seqs was received; the ones still missing."""
        deadline = time.monotonic() + timeout
        while True:
            missing = seqs - set(self.seqs())
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def check_order(readings: list[dict[str, Any]]) -> list[str]:
    """Problems with per-device order: a new seq arriving after a higher one of the same device."""
    problems = []
    highest: dict[tuple[str, str], int] = {}
    seen: set[tuple[str, int]] = set()
    for r in readings:
        key = (r.get("edge", ""), r["device"])
        if (r["device"], r["seq"]) in seen:
            continue  # a duplicate (at least once): fine
        seen.add((r["device"], r["seq"]))
        if r["seq"] < highest.get(key, 0):
            problems.append(f"{r['device']} seq {r['seq']} after {highest[key]}")
        highest[key] = max(highest.get(key, 0), r["seq"])
    return problems


# -- an HTTP receiver --------------------------------------------------------------------------------------

@dataclass
class Received:
    """One request as the receiver saw it."""

    at: float  # monotonic
    headers: dict[str, str]
    payload: dict[str, Any]
    status: int  # what the receiver answered


Responder = Any  # (Received without status, index) -> (status, headers)


class Receiver:
    """An aiohttp server on 127.0.0.1 that records POSTs and answers per a responder (default: 200)."""

    def __init__(self, ssl_context: Any = None) -> None:
        self.requests: list[Received] = []
        self.responder: Responder = lambda req, i: (200, {})
        self.ssl_context = ssl_context
        self.port = free_port()
        self._runner: Any = None

    async def start(self) -> Receiver:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/ingest", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}/ingest"

    async def _handle(self, request: Any) -> Any:
        import gzip as gz

        from aiohttp import web

        body = await request.read()
        if body[:2] == b"\x1f\x8b":  # aiohttp may or may not have inflated it already
            body = gz.decompress(body)
        rec = Received(time.monotonic(), dict(request.headers), json.loads(body), 0)
        status, headers = self.responder(rec, len(self.requests))
        rec.status = status
        self.requests.append(rec)
        return web.json_response({"ok": status < 300}, status=status, headers=headers)

    def delivered(self) -> list[int]:
        """Seqs of the readings in requests answered with a 2xx, in arrival order."""
        return [r["seq"] for q in self.requests if 200 <= q.status < 300 for r in q.payload["readings"]]
