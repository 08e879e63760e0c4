"""Edits of the config file's text with tomlkit: comments, order and formatting of everything else stay as they are."""

from __future__ import annotations

from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError
from tomlkit.items import AoT, Table

SECTIONS = ("edge", "store", "api", "discovery")


class EditError(Exception):
    """The requested edit cannot be made on this file (the message says why)."""


def parse(text: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except ParseError as e:
        raise EditError(f"the config file is not valid TOML: {e}") from e


def tables(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Editable tables: (kind, name, scalar keys → values) for sections, devices (each followed by its points,
    named DEVICE/POINT) and sinks, in file order."""
    doc = parse(text)
    out: list[tuple[str, str, dict[str, Any]]] = []
    for section in SECTIONS:
        table = doc.get(section)
        out.append(("section", section, _scalars(table) if isinstance(table, dict) else {}))
    for kind, key in (("device", "device"), ("sink", "sink")):
        for item in doc.get(key, []) or []:
            name = str(item.get("name", "?"))
            out.append((kind, name, _scalars(item)))
            if kind == "device":
                for point in item.get("point", []) or []:
                    out.append(("point", f"{name}/{point.get('name', '?')}", _scalars(point)))
    return out


def _scalars(table: Any) -> dict[str, Any]:
    return {k: v for k, v in table.items() if not isinstance(v, dict | list | Table | AoT)
            or (isinstance(v, list) and all(not isinstance(x, dict) for x in v))}


def value_text(v: Any) -> str:
    """How a value is shown in a form field: strings bare, everything else as TOML."""
    if isinstance(v, str):
        return str(v)
    return tomlkit.item(v).as_string()


def value_from_text(text: str, like: Any) -> Any:
    """A form field's text as a value of the same kind as `like` (text the daemon will judge if it does not fit)."""
    if isinstance(like, str):
        return text
    try:
        return tomlkit.parse(f"v = {text.strip()}")["v"]
    except ParseError:
        return text


def _target(doc: tomlkit.TOMLDocument, kind: str, name: str) -> Any:
    if kind == "section":
        if name not in doc:
            doc[name] = tomlkit.table()
        return doc[name]
    if kind == "point":
        device, _, point = name.partition("/")
        for item in _target(doc, "device", device).get("point", []) or []:
            if item.get("name") == point:
                return item
        raise EditError(f"device {device!r} has no point {point!r} in the config file")
    for item in doc.get(kind, []) or []:
        if item.get("name") == name:
            return item
    raise EditError(f"no {kind} named {name!r} in the config file")


def set_values(text: str, kind: str, name: str, values: dict[str, Any]) -> str:
    """The file's text with these keys of one section, device, point or sink set (others untouched)."""
    doc = parse(text)
    target = _target(doc, kind, name)
    for key, v in values.items():
        old = target.get(key)
        if old is not None and old == v and type(old.unwrap() if hasattr(old, "unwrap") else old) is type(v):
            continue
        target[key] = v
    return tomlkit.dumps(doc)


def parse_assignment(text: str) -> dict[str, Any]:
    """`key = value` (TOML) typed into the form's new-key field → {key: value}; empty → {}."""
    if not text.strip():
        return {}
    try:
        doc = tomlkit.parse(text.strip())
    except ParseError as e:
        raise EditError(f"new key: expected  key = value  in TOML, e.g.  timeout = \"2s\"  ({e})") from e
    if len(doc) != 1 or isinstance(next(iter(doc.values())), dict):
        raise EditError("new key: expected exactly one  key = value")
    return {k: v for k, v in doc.items()}


def add_device(text: str, device: dict[str, Any], comment: str | None = None) -> str:
    """The file's text with a new [[device]] (and its [[device.point]]s) appended after the last device."""
    doc = parse(text)
    names = {str(d.get("name")) for d in doc.get("device", []) or []}
    if device.get("name") in names:
        raise EditError(f"a device named {device['name']!r} exists already")
    table = tomlkit.table()
    if comment:
        table.add(tomlkit.comment(comment))
    for key, v in device.items():
        if key != "point":
            table[key] = v
    points = device.get("point") or []
    if points:
        aot = tomlkit.aot()
        for p in points:
            aot.append(tomlkit.item(p))
        table["point"] = aot
    if "device" in doc:
        doc["device"].append(table)
    else:
        aot = tomlkit.aot()
        aot.append(table)
        doc["device"] = aot
    return tomlkit.dumps(doc)
