"""Loading a config file: TOML → validated typed objects, or every problem as FILE:LINE: key.path: message."""

from __future__ import annotations

import functools
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from drivers import registry as driver_registry
from drivers.base import DeviceConfig
from edge.config.locate import key_lines, line_of
from edge.config.models import (
    ApiSection,
    DiscoverySection,
    EdgeSection,
    PipelineSection,
    SecretsSection,
    StoreSection,
    resolve,
)
from sync import registry as sink_registry
from sync.base import SinkConfig

DEFAULT_PATH = "/etc/edge/edge.toml"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class ConfigError(Exception):
    """The config cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Config:
    """A validated config with paths resolved."""

    source: Path
    edge: EdgeSection
    store: StoreSection
    api: ApiSection
    discovery: DiscoverySection
    pipeline: PipelineSection
    devices: list[DeviceConfig]
    sinks: list[SinkConfig]

    @property
    def data_dir(self) -> Path:
        return resolve(self.source.parent, self.edge.data_dir)

    @property
    def tokens_path(self) -> Path:
        return resolve(self.data_dir, self.api.tokens_file)

    @property
    def admin_socket_path(self) -> Path | None:
        return resolve(self.data_dir, self.api.admin_socket) if self.api.admin_socket else None

    @property
    def transforms_path(self) -> Path:
        return resolve(self.source.parent, self.pipeline.transforms_dir)


@functools.cache
def _root_model() -> type[BaseModel]:
    """The whole file's model; devices and sinks are unions over whatever drivers/sinks are registered."""
    dev_models = driver_registry.config_models()
    sink_models = sink_registry.config_models()
    dev_t: Any = Annotated[Union[tuple(dev_models)], Field(discriminator="driver")] if dev_models else DeviceConfig  # noqa: UP007
    sink_t: Any = Annotated[Union[tuple(sink_models)], Field(discriminator="type")] if sink_models else SinkConfig  # noqa: UP007
    return create_model(
        "ConfigFile",
        __config__=ConfigDict(extra="forbid", frozen=True),
        edge=(EdgeSection, ...),
        store=(StoreSection, StoreSection()),
        api=(ApiSection, ApiSection()),
        discovery=(DiscoverySection, DiscoverySection()),
        pipeline=(PipelineSection, PipelineSection()),
        secrets=(SecretsSection, SecretsSection()),
        device=(list[dev_t], []),
        sink=(list[sink_t], []),
    )


def _known_tags() -> tuple[list[str], list[str]]:
    return sorted(driver_registry.DRIVERS), sorted(sink_registry.SINKS)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: dict[str, Any], model_keys: list[str] | None) -> str:
    """Turn one pydantic error into 'expected …, found …'."""
    kind, msg, value = err["type"], err["msg"], err.get("input")
    if kind == "missing":
        return "expected a value (this key is required), found nothing"
    if kind == "extra_forbidden":
        known = f" (known keys: {', '.join(model_keys)})" if model_keys else ""
        return f"expected no such key, found unknown key{known}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        drivers, sinks = _known_tags()
        tag = err.get("ctx", {}).get("discriminator", "").strip("'")
        choices = drivers if tag == "driver" else sinks
        found = _show(err.get("ctx", {}).get("tag")) if kind == "union_tag_invalid" else "nothing"
        return f"expected one of {', '.join(map(repr, choices))}, found {found}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
        return msg if "found" in msg else f"{msg}, found {_show(value)}"
    msg = re.sub(r"^Input should be ", "expected ", msg)
    msg = re.sub(r"^String should match pattern ", "expected a name matching ", msg)
    msg = re.sub(r"^(Value|String|List|Input) should (have|be) ", r"expected \2 ", msg)
    if not msg.startswith("expected"):
        msg = "expected a valid value (" + msg[:1].lower() + msg[1:] + ")"
    return f"{msg}, found {_show(value)}"


def _path_text(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _clean_loc(loc: tuple[Any, ...], raw: dict[str, Any]) -> tuple[str | int, ...]:
    """Drop the discriminator tag pydantic inserts after device[i] / sink[i]."""
    out: list[str | int] = []
    i = 0
    while i < len(loc):
        out.append(loc[i])
        if (len(out) == 2 and out[0] in ("device", "sink") and isinstance(out[1], int)
                and i + 1 < len(loc) and isinstance(loc[i + 1], str)):
            entries = raw.get(str(out[0]), [])
            entry = entries[out[1]] if isinstance(entries, list) and out[1] < len(entries) else {}
            tag = entry.get("driver" if out[0] == "device" else "type") if isinstance(entry, dict) else None
            if loc[i + 1] == tag:
                i += 1
        i += 1
    return tuple(out)


def _keys_for(loc: tuple[str | int, ...], raw: dict[str, Any]) -> list[str] | None:
    """The keys allowed at the table holding loc's last key (for 'unknown key' messages)."""
    if len(loc) < 2:
        return sorted(_root_model().model_fields)
    section = loc[0]
    if section in ("edge", "store", "api", "discovery", "pipeline") and len(loc) == 2:
        sections: dict[str, type[BaseModel]] = {"edge": EdgeSection, "store": StoreSection, "api": ApiSection,
                                                "discovery": DiscoverySection, "pipeline": PipelineSection}
        return sorted(sections[str(section)].model_fields)
    if section in ("device", "sink") and len(loc) >= 3 and isinstance(loc[1], int):
        entries = raw.get(str(section), [])
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else {}
        if not isinstance(entry, dict):
            return None
        reg: Any = driver_registry if section == "device" else sink_registry
        table = reg.DRIVERS if section == "device" else reg.SINKS
        tag = entry.get("driver" if section == "device" else "type")
        if tag not in table:
            return None
        model = reg._load(table[tag][0])
        if len(loc) == 3:
            return sorted(model.model_fields)
        if loc[2] == "point" and len(loc) == 5:
            ann = model.model_fields["point"].annotation
            point_model: Any = getattr(ann, "__args__", [None])[0]
            if point_model is not None and hasattr(point_model, "model_fields"):
                return sorted(point_model.model_fields)
    return None


def _duplicates(raw_list: Any, what: str, section: str, lines: dict[Any, int], file: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    if not isinstance(raw_list, list):
        return problems
    for i, entry in enumerate(raw_list):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            path = (section, i, "name")
            problems.append(Problem(file, line_of(lines, path), _path_text(path),
                                    f"expected a unique {what} name, found {name!r} again "
                                    f"(first at {section}[{seen[name]}])"))
        else:
            seen[name] = i
    return problems


def _mentions_secrets(value: Any) -> bool:
    """Whether any string in the parsed config starts with `secret:` (edge.secrets.SECRET_PREFIX)."""
    if isinstance(value, str):
        return value.startswith("secret:")
    if isinstance(value, dict):
        return any(_mentions_secrets(v) for v in value.values())
    if isinstance(value, list):
        return any(_mentions_secrets(v) for v in value)
    return False


def _with_secrets(raw: dict[str, Any], file: str) -> dict[str, Any]:
    """Replace `secret:NAME` strings by their values from the encrypted secrets store."""
    if not _mentions_secrets(raw):
        # edge.secrets loads the cryptography package: ~6 MB of RSS for the daemon's whole life, for nothing.
        return raw
    from edge.secrets import SecretError, resolve_secrets

    edge: dict[str, Any] = raw["edge"] if isinstance(raw.get("edge"), dict) else {}
    default_dir = EdgeSection.model_fields["data_dir"].default
    data_dir = resolve(Path(file).resolve().parent, str(edge.get("data_dir", default_dir)))
    try:
        resolved: dict[str, Any] = resolve_secrets(raw, str(data_dir))
    except SecretError as e:
        raise ConfigError([Problem(file, 0, "(secrets)", f"expected every referenced secret to be set: {e}")]) from None
    return resolved


def parse_text(text: str, file: str, secrets: bool = False) -> Config:
    """Validate config text; raises ConfigError listing every problem. secrets=True resolves `secret:NAME`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = int(m.group(1)) if m else 1
        what = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        problem = Problem(file, line, "(toml)", f"expected valid TOML, found a syntax error: {what}")
        raise ConfigError([problem]) from None
    lines = key_lines(text)
    problems: list[Problem] = []
    model = _root_model()
    if secrets:
        raw = _with_secrets(raw, file)
    try:
        parsed = model.model_validate(raw)
    except ValidationError as e:
        parsed = None
        for err in e.errors(include_url=False):
            loc = _clean_loc(tuple(err["loc"]), raw)
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = (*loc, "driver" if loc and loc[0] == "device" else "type")
            keys = _keys_for(loc, raw) if err["type"] == "extra_forbidden" else None
            problems.append(Problem(file, line_of(lines, loc), _path_text(loc), _message(dict(err), keys)))
    problems += _duplicates(raw.get("device"), "device", "device", lines, file)
    problems += _duplicates(raw.get("sink"), "sink", "sink", lines, file)
    if problems or parsed is None:
        problems.sort(key=lambda p: p.line)
        raise ConfigError(problems)
    data: Any = parsed
    return Config(
        source=Path(file).resolve() if file != "<string>" else Path.cwd() / "edge.toml",
        edge=data.edge, store=data.store, api=data.api, discovery=data.discovery, pipeline=data.pipeline,
        devices=list(data.device), sinks=list(data.sink),
    )  # the parsed TOML is not kept: nothing reads it, and it held ~0.5 KB per point for the daemon's life


def default_path() -> str:
    return os.environ.get("EDGE_CONFIG") or DEFAULT_PATH


def load_config(path: str | os.PathLike[str] | None = None, secrets: bool = False) -> Config:
    """Read and validate a config file; raises ConfigError listing the file's problems.

    secrets=True (the daemon) replaces `secret:NAME` values from the encrypted secrets store.
    """
    file = str(path or default_path())
    try:
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(file, 0, "(file)", "expected a config file, found no such file")]) from None
    except UnicodeDecodeError as e:
        problem = Problem(file, 1, "(file)", f"expected UTF-8 text, found invalid bytes ({e.reason})")
        raise ConfigError([problem]) from None
    except OSError as e:
        raise ConfigError([Problem(file, 0, "(file)", f"expected a readable file, found {e.strerror}")]) from None
    return parse_text(text, file, secrets)
