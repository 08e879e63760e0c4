"""Config of `driver = "ble"` devices and points: advertisement (bthome/ruuvi/raw) or GATT, validated up front."""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from drivers.base import DeviceConfig, PointConfig
from drivers.ble.fields import ByteOrder, FieldType
from drivers.ble.parsers import bthome, ruuvi
from drivers.ble.uuids import normalize_uuid
from edge.quantities import Duration

DEFAULT_STALE_AFTER: Final = 300.0  # an advertisement device not heard for this long gets bad readings
DEFAULT_MAX_CONNECTIONS: Final = 3  # simultaneous GATT connections per adapter; real adapters fail beyond a few
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_BLE_TIMEOUT: Final = 5.0  # one GATT read or write
DEFAULT_RECONNECT_DELAY: Final = 1.0  # first wait after a failed GATT connect; doubles up to RECONNECT_DELAY_MAX
RSSI_FIELD: Final = "rssi"

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
_REPEAT = re.compile(r"^(.+)_(\d+)$")


def _mac(text: str) -> str:
    if not _MAC.match(text):
        raise ValueError(f"expected a Bluetooth address like 'AA:BB:CC:DD:EE:FF', found {text!r}")
    return text.replace("-", ":").upper()


def _uuid(text: str) -> str:
    return normalize_uuid(text)


Address = Annotated[str, AfterValidator(_mac)]
Uuid = Annotated[str, AfterValidator(_uuid)]
BindKey = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{32}$")]
Adapter = Annotated[str, StringConstraints(pattern=r"^hci[0-9]{1,3}$")]


class BlePoint(PointConfig):
    """A BLE point: a format field (bthome/ruuvi), a byte field (raw), or a characteristic (gatt)."""

    field: str | None = None  # bthome/ruuvi: the format's field name (default: the point name); "rssi" anywhere
    source: Literal["manufacturer_data", "service_data"] | None = None  # raw
    company_id: int | None = Field(default=None, ge=0, le=0xFFFF)  # raw, manufacturer_data
    service_uuid: Uuid | None = None  # raw, service_data
    uuid: Uuid | None = None  # gatt: the characteristic
    type: FieldType | None = None  # raw and gatt
    byte_offset: int = Field(default=0, ge=0)
    byte_order: ByteOrder = "little"
    length: int | None = Field(default=None, ge=1)  # bytes, for type = "string"
    notify: bool = False  # gatt: subscribe instead of reading on each poll

    @property
    def source_field(self) -> str:
        """The format field this point shows."""
        return self.field or self.name


def _known_field(name: str, known: frozenset[str]) -> bool:
    if name in known or name == RSSI_FIELD:
        return True
    m = _REPEAT.match(name)
    return bool(m and m.group(1) in known)


class BleDevice(DeviceConfig):
    """A BLE device: `mode = "advertisement"` (push, decoded adverts) or `mode = "gatt"` (connected)."""

    driver: Literal["ble"]
    mode: Literal["advertisement", "gatt"] = "advertisement"
    address: Address | None = None
    format: Literal["bthome", "ruuvi", "raw"] | None = None
    adapter: Adapter | None = None  # e.g. "hci0"; None = BlueZ's default adapter
    bindkey: BindKey | None = None  # encrypted BTHome: 32 hex digits
    match_name: str | None = None  # advertisement: local name glob, e.g. "ATC_*" (with or without address)
    match_service_uuid: Uuid | None = None  # advertisement: only adverts listing this service UUID
    stale_after: Duration = Field(default=DEFAULT_STALE_AFTER, gt=0)
    max_connections: int = Field(default=DEFAULT_MAX_CONNECTIONS, ge=1)
    connect_timeout: Duration = Field(default=DEFAULT_CONNECT_TIMEOUT, gt=0)
    timeout: Duration = Field(default=DEFAULT_BLE_TIMEOUT, gt=0)
    reconnect_delay: Duration = Field(default=DEFAULT_RECONNECT_DELAY, gt=0)
    point: list[BlePoint] = Field(default_factory=list)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _keys_fit_mode(self) -> BleDevice:
        if self.mode == "gatt":
            self._check_gatt()
        else:
            self._check_advertisement()
        return self

    def _check_gatt(self) -> None:
        if self.address is None:
            raise ValueError("address: expected the device's address in gatt mode, found none")
        if self.format is not None or self.bindkey is not None:
            raise ValueError("format/bindkey: only for mode = 'advertisement'")
        for i, p in enumerate(self.point):
            if p.uuid is None or p.type is None:
                raise ValueError(f"point[{i}]: expected uuid and type in gatt mode (e.g. uuid = '2a6e', "
                                 f"type = 'int16'), found uuid={p.uuid!r} type={p.type!r}")
            if p.source is not None or p.field is not None:
                raise ValueError(f"point[{i}]: source/field are for advertisement devices, not gatt")

    def _check_advertisement(self) -> None:
        if self.format is None:
            raise ValueError("format: expected bthome | ruuvi | raw for mode = 'advertisement', found none")
        if self.address is None and self.match_name is None and self.match_service_uuid is None:
            raise ValueError("address: expected an address (or match_name / match_service_uuid), found none")
        if self.bindkey is not None and self.format != "bthome":
            raise ValueError(f"bindkey: only for format = 'bthome', found format = {self.format!r}")
        known = {"bthome": bthome.FIELD_NAMES, "ruuvi": ruuvi.FIELD_NAMES}.get(self.format)
        for i, p in enumerate(self.point):
            if p.uuid is not None or p.notify:
                raise ValueError(f"point[{i}]: uuid/notify are for gatt devices, not advertisement")
            if p.writable:
                raise ValueError(f"point[{i}].writable: advertisement points cannot be written")
            if known is not None:
                if not _known_field(p.source_field, known):
                    raise ValueError(f"point[{i}]: expected a {self.format} field ({', '.join(sorted(known))}"
                                     f", rssi), found {p.source_field!r}")
            elif p.source_field != RSSI_FIELD:
                self._check_raw_point(i, p)

    @staticmethod
    def _check_raw_point(i: int, p: BlePoint) -> None:
        if p.source is None or p.type is None:
            raise ValueError(f"point[{i}]: expected source ('manufacturer_data' | 'service_data') and type "
                             f"for format = 'raw', found source={p.source!r} type={p.type!r}")
        if p.source == "manufacturer_data" and p.service_uuid is not None:
            raise ValueError(f"point[{i}].service_uuid: only with source = 'service_data'")
        if p.source == "service_data" and p.company_id is not None:
            raise ValueError(f"point[{i}].company_id: only with source = 'manufacturer_data'")

    @property
    def driver_class(self) -> str:
        """Which Driver class runs this device: advertisement (push), GATT notify (push) or GATT poll."""
        if self.mode == "advertisement":
            return "drivers.ble.driver:BleAdvertisementDriver"
        if any(p.notify for p in self.point):
            return "drivers.ble.driver:BleGattNotifyDriver"
        return "drivers.ble.driver:BleGattPollDriver"
