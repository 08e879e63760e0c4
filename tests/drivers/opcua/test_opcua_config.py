"""Config keys of OPC-UA devices and points: what is accepted, and the messages for what is not."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

import pytest
from asyncua import ua
from pydantic import ValidationError

from drivers.base import DeviceStatus
from drivers.opcua.config import OpcuaDevice, OpcuaPoint, parse_security
from drivers.opcua.paths import resolve_pki_dir
from drivers.opcua.session import DeviceSession
from drivers.opcua.subscription import SubscriptionFeed
from drivers.opcua.values import ReadingMaker, plain_value, quality_of, status_name
from drivers.opcua.writing import to_variant
from edge.pipeline import Pipeline
from edge.reading import Reading


def dev(**kw: Any) -> OpcuaDevice:
    return OpcuaDevice.model_validate({"name": "d", "driver": "opcua", "url": "opc.tcp://h:4840", **kw})


@pytest.mark.parametrize("text, parsed", [
    ("None", None),
    ("Basic256Sha256,SignAndEncrypt", ("Basic256Sha256", "SignAndEncrypt")),
    ("Aes128_Sha256_RsaOaep,Sign", ("Aes128_Sha256_RsaOaep", "Sign")),
])
def test_security_strings(text: str, parsed: Any) -> None:
    assert parse_security(text) == parsed
    assert dev(security=text).security_policy == parsed


@pytest.mark.parametrize("bad", ["Basic256Sha256", "Basic128Rsa15,Sign", "Basic256Sha256,Encrypt", ""])
def test_bad_security_strings_name_the_choices(bad: str) -> None:
    with pytest.raises(ValidationError, match="Basic256Sha256, Aes128_Sha256_RsaOaep"):
        dev(security=bad)


@pytest.mark.parametrize("node", ["ns=2;s=Line1.Temp", "ns=3;i=1001", "i=85", "nsu=urn:x:y;s=A.B",
                                  "ns=2;g=09087e75-8e5e-499b-954f-f2a9603db28a", "ns=1;b=M/RbKBsRVkePCePcx24oRA=="])
def test_node_ids(node: str) -> None:
    assert OpcuaPoint(name="p", node=node).node == node


@pytest.mark.parametrize(("node", "why"), [
    ("ns=70000;i=1", "namespace index 0..65535"),
    ("ns=2;i=4294967296", "numeric identifier 0..4294967295"),
    ("ns=2;g=------------------------------------", "GUID"),
])
def test_node_ids_that_no_request_could_carry_are_refused(node: str, why: str) -> None:
    """They passed `edge check`, then every Read failed to encode and the driver reconnected on each poll."""
    with pytest.raises(ValidationError, match=why):
        OpcuaPoint(name="p", node=node)


def test_point_address_rules() -> None:
    with pytest.raises(ValidationError, match="node id like"):
        OpcuaPoint(name="p", node="Line1.Temp")
    with pytest.raises(ValidationError, match="exactly one of 'node' or 'browse_path'"):
        OpcuaPoint(name="p")
    with pytest.raises(ValidationError, match="exactly one of 'node' or 'browse_path'"):
        OpcuaPoint(name="p", node="i=85", browse_path="2:A")
    with pytest.raises(ValidationError, match="deadband_type"):
        OpcuaPoint(name="p", node="i=85", server_deadband=1)
    with pytest.raises(ValidationError, match="<= 100"):
        OpcuaPoint(name="p", node="i=85", deadband_type="percent", server_deadband=150)


def test_device_rules_and_mode_picks_the_class() -> None:
    with pytest.raises(ValidationError, match=r"opc\.tcp://"):
        dev(url="http://h")
    with pytest.raises(ValidationError, match="password needs username"):
        dev(password="x")
    with pytest.raises(ValidationError, match="one user token"):
        dev(username="u", user_certificate="c.der", user_private_key="k.pem")
    assert dev().driver_class.endswith("OpcuaSubscribeDriver")
    assert dev(mode="poll").driver_class.endswith("OpcuaPollDriver")


def test_pki_dir_is_resolved_against_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("EDGE_DATA_DIR", str(tmp_path))
    assert resolve_pki_dir("pki/opcua") == tmp_path / "pki" / "opcua"
    assert resolve_pki_dir("/abs/pki") == tmp_path.__class__("/abs/pki")
    monkeypatch.delenv("EDGE_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    assert resolve_pki_dir(None) == tmp_path / "pki" / "opcua"


def test_status_codes_to_quality() -> None:
    assert quality_of(ua.StatusCode(ua.StatusCodes.Good)) == "good"
    assert quality_of(ua.StatusCode(ua.StatusCodes.UncertainInitialValue)) == "uncertain"
    assert quality_of(ua.StatusCode(ua.StatusCodes.BadCommunicationError)) == "bad"
    assert status_name(ua.StatusCode(ua.StatusCodes.BadCommunicationError)) == "BadCommunicationError"
    assert status_name(ua.StatusCodes.GoodClamped | 0x0400) == "GoodClamped"  # info bits ignored


OVERFLOW = "the server's queue overflowed: values were lost before this one"


@pytest.mark.parametrize("code, quality, value, error", [
    (0x00000480, "uncertain", 2.5, OVERFLOW),  # Good, InfoType DataValue, Overflow
    (0x40A20480, "uncertain", 2.5, f"Uncertain (0x40A20480); {OVERFLOW}"),
    (ua.StatusCodes.UncertainLastUsableValue | 0x480, "uncertain", 2.5, f"UncertainLastUsableValue; {OVERFLOW}"),
    (ua.StatusCodes.BadSensorFailure | 0x480, "bad", None, f"BadSensorFailure; {OVERFLOW}"),
    (0x00000400, "good", 2.5, None),  # InfoType DataValue without Overflow
    (0x00000080, "good", 2.5, None),  # bit 7 without InfoType DataValue means nothing
])
def test_the_overflow_info_bit_says_values_were_lost(code: int, quality: str, value: Any, error: str | None) -> None:
    """A monitored item whose server-side queue overflowed: the value is at best uncertain and says so."""
    device = dev(point=[{"name": "v", "node": "ns=2;s=V"}])
    dv = ua.DataValue(ua.Variant(2.5, ua.VariantType.Double), StatusCode=ua.StatusCode(code))
    r = ReadingMaker(device).reading(device.point[0], dv, 1.0)
    assert (r.quality, r.value, r.error) == (quality, value, error)


def test_plain_values() -> None:
    assert plain_value(math.nan) == "nan" and plain_value(-math.inf) == "-inf"
    assert plain_value(b"\x01\xff") == "01ff"
    assert plain_value(ua.LocalizedText("hello", "en")) == "hello"
    assert plain_value(ua.QualifiedName("Temp", 2)) == "2:Temp"
    assert plain_value(ua.NodeId("X", 2)) == "ns=2;s=X"
    assert plain_value([[1, 2], [3, 4]]) == [[1, 2], [3, 4]]


@pytest.mark.parametrize("garbage", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_is_uncertain_and_stays_a_number(garbage: float) -> None:
    """As in the Modbus driver: the value keeps its type (the payload shows null), so a deadband still works."""
    device = dev(point=[{"name": "t", "node": "ns=2;i=1", "deadband": 0.5}])
    maker = ReadingMaker(device)
    bad = maker.reading(device.point[0], ua.DataValue(ua.Variant(garbage, ua.VariantType.Double)))
    assert bad.quality == "uncertain" and "not a finite number" in (bad.error or "")
    assert isinstance(bad.value, float)
    pipeline = Pipeline([device])
    pipeline.process([bad])
    good = maker.reading(device.point[0], ua.DataValue(ua.Variant(21.5, ua.VariantType.Double)))
    assert [r.value for r in pipeline.process([good])] == [21.5]


NOT_A_TIME = [
    dt.datetime(1601, 1, 1, tzinfo=dt.UTC),  # the null DateTime (0 on the wire), as asyncua decodes it
    dt.datetime(1601, 1, 1),  # the same without a time zone
    dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
    dt.datetime(1970, 1, 1, tzinfo=dt.UTC),  # a Unix clock at 0
    dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),  # the maximum DateTime, a marker too
]
SOURCE = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
SERVER = dt.datetime(2021, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
LOCAL = 1.8e9


@pytest.mark.parametrize("absurd", NOT_A_TIME, ids=str)
def test_a_null_or_absurd_timestamp_counts_as_missing(absurd: dt.datetime) -> None:
    def ts(source: dt.datetime | None, server: dt.datetime | None, **config: str) -> float:
        value = ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), SourceTimestamp=source, ServerTimestamp=server)
        return ReadingMaker(dev(**config)).timestamp(value, LOCAL)

    assert ts(absurd, SERVER) == SERVER.timestamp()
    assert ts(absurd, absurd) == LOCAL
    assert ts(absurd, SERVER, timestamp_fallback="local") == LOCAL
    assert ts(SOURCE, absurd, timestamp="server") == LOCAL
    assert ts(SOURCE, SERVER) == SOURCE.timestamp()  # real ones are kept
    assert ts(dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC), None) == 1.0
    reading = ReadingMaker(dev()).reading(dev(point=[{"name": "t", "node": "ns=2;i=1"}]).point[0],
                                          ua.DataValue(ua.Variant(2.5, ua.VariantType.Double), SourceTimestamp=absurd),
                                          LOCAL)
    assert (reading.value, reading.quality, reading.ts) == (2.5, "good", LOCAL)


@pytest.mark.parametrize("ticks", range(6))
async def test_stopping_the_subscription_pump_is_never_lost(ticks: int) -> None:
    """A cancel that lands just as a batch arrives must still end the pump (else the session outlives a stop)."""
    device = dev(point=[{"name": "t", "node": "ns=2;i=1"}])
    status = DeviceStatus()
    feed = SubscriptionFeed(device, DeviceSession(device, status), ReadingMaker(device), status)
    waiting = asyncio.create_task(feed.next_batch(30.0, 10))
    await asyncio.sleep(0)
    feed.queue.put_nowait([Reading("d", "t", 1.0)])
    for _ in range(ticks):
        await asyncio.sleep(0)
    if waiting.cancel():  # still waiting: the cancel must end it
        with pytest.raises(asyncio.CancelledError):
            await waiting
    else:  # it had returned the batch already
        assert [r.value for r in waiting.result()] == [1.0]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1.5, "7", True])
def test_a_write_that_is_no_integer_is_refused_with_a_reason(value: Any) -> None:
    """Values the API lets through (JSON's 1e999 is inf) must become a WriteError's reason, not an OverflowError."""
    with pytest.raises(ValueError, match="expected an integer for Int32"):
        to_variant(value, ua.VariantType.Int32, False)
    assert to_variant(7.0, ua.VariantType.Int32, False).Value == 7


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    """asyncua would log in with them, and the url is in every log line and error about the session."""
    with pytest.raises(ValidationError, match="username and password") as refused:
        dev(url="opc.tcp://operator:s3cret@plc:4840")
    assert all("s3cret" not in e["msg"] for e in refused.value.errors())


def test_a_regenerated_key_replaces_a_readable_file_with_a_0600_one(tmp_path: Any) -> None:
    """An own/key.pem left world-readable that holds no RSA key is rewritten with a new key, as 0600."""
    import stat

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from drivers.opcua.pki import Pki

    pki = Pki(tmp_path / "pki")
    pki.own_key.parent.mkdir(parents=True)
    pki.own_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pki.own_key.chmod(0o644)
    pki.ensure_own_certificate("urn:test:edge")
    assert stat.S_IMODE(pki.own_key.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(pki.own_key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)


@pytest.mark.parametrize("variant, quality, value", [
    (ua.Variant(None, ua.VariantType.String), "good", ""),  # a null string is a legal, empty value
    (ua.Variant(None, ua.VariantType.ByteString), "good", ""),
    (ua.Variant(ua.LocalizedText(None), ua.VariantType.LocalizedText), "good", ""),  # not good with null
    (ua.Variant(None, ua.VariantType.Null), "bad", None),  # no value at all
])
def test_null_texts_are_empty_values_and_a_null_variant_is_no_value(variant: Any, quality: str, value: Any) -> None:
    device = dev(point=[{"name": "v", "node": "ns=2;s=V"}])
    r = ReadingMaker(device).reading(device.point[0], ua.DataValue(variant), 1.0)
    assert (r.quality, r.value) == (quality, value)
