"""The configuration reference (docs/config-reference.md), generated from the config models so it cannot drift.

    python -m edge.config.reference > docs/config-reference.md
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from drivers import registry as driver_registry
from edge.config.loader import _root_model
from edge.config.models import TransformSpec
from edge.quantities import format_duration, format_size
from sync import registry as sink_registry

HEADER = """# Configuration reference

Generated from the config models by `python -m edge.config.reference`; a test fails when this file is out
of date. Durations accept "500ms", "1s", "5m", "30d"; sizes accept "64MiB", "1GiB". The guide with
explanations and examples is [configuration.md](configuration.md).
"""


def _type_name(annotation: Any, meta: list[Any]) -> str:
    text = repr(annotation)
    for m in meta:
        name = getattr(getattr(m, "func", None), "__name__", "")
        if name == "parse_duration":
            return "duration"
        if name == "parse_size":
            return "size"
        if getattr(m, "pattern", None):
            return "name" if "A-Za-z0-9._-" in m.pattern else "string"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", '"') for a in typing.get_args(annotation))
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(_type_name(a, []) for a in args) + (" (optional)" if len(args) < len(
            typing.get_args(annotation)) else "")
    if origin is list:
        (inner,) = typing.get_args(annotation) or (Any,)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return "list of tables"
        return f"list of {_type_name(inner, [])}"
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return _type_name(base, list(extra))
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__)
    return text.replace("typing.", "")


def _default(field: FieldInfo, kind: str) -> str:
    if field.is_required():
        return "**required**"
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("default_doc"), str):
        return str(extra["default_doc"])  # a default derived from other keys, in words
    value = field.default if field.default is not PydanticUndefined else None
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            value = None
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return f"{len(value)} entries"
    if kind == "duration" and isinstance(value, int | float):
        return f'`"{format_duration(value)}"`'
    if kind == "size" and isinstance(value, int):
        return f'`"{format_size(value)}"`'
    if value is None:
        return "none"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, bool | list | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> str:
    rows = ["| key | type | default |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        kind = _type_name(field.annotation, list(field.metadata))
        if field.annotation is not None and typing.get_origin(field.annotation) is typing.Literal \
                and len(typing.get_args(field.annotation)) == 1:
            continue  # the discriminator (driver = / type =) is in the heading
        rows.append(f"| `{name}` | {kind} | {_default(field, kind)} |")
    return "\n".join(rows)


def _point_model(model: type[BaseModel]) -> type[BaseModel] | None:
    field = model.model_fields.get("point")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    inner = args[0] if args else None
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def render() -> str:
    parts = [HEADER]
    sections: list[tuple[str, type[BaseModel]]] = [
        (f"[{name}]", f.annotation) for name, f in _root_model().model_fields.items()
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)]  # not the device/sink lists
    sections.append(("[[pipeline.transform]]", TransformSpec))
    for title, model in sections:
        parts.append(f"## {title}\n\n{table(model, skip=('transform',))}\n")
    for name in sorted(driver_registry.DRIVERS):
        model = driver_registry._load(driver_registry.DRIVERS[name][0])
        parts.append(f'## [[device]] driver = "{name}"\n\n{table(model, skip=("point",))}\n')
        point = _point_model(model)
        if point is not None:
            parts.append(f'### [[device.point]] of driver = "{name}"\n\n{table(point)}\n')
    for name in sorted(sink_registry.SINKS):
        model = sink_registry._load(sink_registry.SINKS[name][0])
        parts.append(f'## [[sink]] type = "{name}"\n\n{table(model)}\n')
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
