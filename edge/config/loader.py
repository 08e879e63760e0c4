"""Loading a config file: TOML → validated typed objects, or every problem as FILE:LINE: key.path: message."""

from __future__ import annotations

import functools
import os
import re
import tomllib
from dataclasses import dataclass, field
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

Loc = tuple[str | int, ...]  # a key path in the file: ("device", 0, "point", 2, "type")


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
    # secret name -> value, only to keep the values out of messages (scrub_secrets); not part of equality
    secret_values: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def scrub_secrets(self, message: str) -> str:
        """message with every secret value this config holds replaced by its `secret:NAME` reference."""
        return _scrub(message, self.secret_values)

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


def _duplicates(raw_list: Any, what: str, section: str) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    if not isinstance(raw_list, list):
        return found
    for i, entry in enumerate(raw_list):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            found.append(((section, i, "name"), f"expected a unique {what} name, found {name!r} again "
                                                f"(first at {section}[{seen[name]}])"))
        else:
            seen[name] = i
    return found


SECRET_PREFIX = "secret:"  # edge.secrets.SECRET_PREFIX, not imported: that module loads `cryptography`


def _secret_refs(value: Any, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """(location, `secret:NAME` string) of every secret reference in the parsed config."""
    if isinstance(value, str):
        return [(loc, value)] if value.startswith(SECRET_PREFIX) else []
    found: list[tuple[Loc, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += _secret_refs(v, (*loc, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _secret_refs(v, (*loc, i))
    return found


def _value_at(raw: Any, loc: Loc) -> Any:
    """The parsed value at loc, or None when there is none."""
    for part in loc:
        in_list = isinstance(part, int) and isinstance(raw, list) and 0 <= part < len(raw)
        if not (in_list or (isinstance(part, str) and isinstance(raw, dict) and part in raw)):
            return None
        raw = raw[part]
    return raw


def _replaced(raw: Any, values: dict[str, str]) -> Any:
    """raw with every reference to a secret in values replaced by its value (other references stay as written)."""
    if isinstance(raw, str):
        name = raw[len(SECRET_PREFIX):] if raw.startswith(SECRET_PREFIX) else None
        return values[name] if name is not None and name in values else raw
    if isinstance(raw, dict):
        return {k: _replaced(v, values) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_replaced(v, values) for v in raw]
    return raw


@dataclass
class _Secrets:
    """The outcome of resolving a config's `secret:NAME` references."""

    raw: dict[str, Any]  # the parsed config with the secrets that could be read put in
    problems: list[tuple[Loc, str]]  # references that could not be resolved, and why
    values: dict[str, str]  # secret name -> value, for keeping the values out of error messages


def _with_secrets(raw: dict[str, Any], file: str) -> _Secrets:
    """Replace `secret:NAME` strings by their values from the encrypted secrets store.

    A reference that cannot be resolved (invalid name, secret not set, store or key unreadable) is a problem
    at its own location; it stays as written so that the rest of the file is still validated.
    """
    refs = _secret_refs(raw)
    if not refs:
        # edge.secrets loads the cryptography package: ~6 MB of RSS for the daemon's whole life, for nothing.
        return _Secrets(raw, [], {})
    from edge.secrets import NAME_RE, SecretError, SecretStore, secret_key_file

    edge: dict[str, Any] = raw["edge"] if isinstance(raw.get("edge"), dict) else {}
    default_dir = EdgeSection.model_fields["data_dir"].default
    data_dir = resolve(Path(file).resolve().parent, str(edge.get("data_dir", default_dir)))
    section = raw.get("secrets")
    key_file = section.get("key_file") if isinstance(section, dict) else None
    store = SecretStore(data_dir, key_file=secret_key_file(data_dir, key_file if isinstance(key_file, str) else None))
    try:
        stored: set[str] | None = set(store.names())
        unreadable = ""
    except SecretError as e:
        stored, unreadable = None, str(e)
    values: dict[str, str] = {}
    failed: dict[str, str] = {}
    problems: list[tuple[Loc, str]] = []
    for loc, ref in refs:
        name = ref[len(SECRET_PREFIX):]
        if not NAME_RE.fullmatch(name):
            problems.append((loc, f"expected {SECRET_PREFIX}NAME with a NAME of 1-64 of A-Z a-z 0-9 . _ -, "
                                  f"found {_show(ref)}"))
        elif stored is None:
            problems.append((loc, f"expected a readable secrets store for {ref}, found: {unreadable}"))
        elif name not in stored:
            problems.append((loc, f"expected a secret that is set, found {ref}, which is not "
                                  f"(secrets not set: run `edge secrets set {name}` on this appliance)"))
        else:
            if name not in values and name not in failed:
                try:
                    values[name] = store.get(name)
                except SecretError as e:
                    failed[name] = str(e)
            if name in failed:
                problems.append((loc, f"expected a secret that can be decrypted, found {ref}, which cannot: "
                                      f"{failed[name]}"))
    return _Secrets(_replaced(raw, values), problems, values)


def _hide_secret(message: str, ref: str) -> str:
    """An error about a value that came from a secret: the found part names the reference, never the value."""
    head = message.split(", found ", 1)[0]
    return f"{head}, found the value of {ref} (not shown)"


def _scrub(message: str, values: dict[str, str]) -> str:
    """Any secret value quoted in a message (e.g. by a check spanning several keys) becomes its reference."""
    for name, value in sorted(values.items(), key=lambda nv: -len(nv[1])):
        if value:
            message = message.replace(repr(value), SECRET_PREFIX + name)
            if len(value) >= 4:  # a shorter one is no secret worth mangling unrelated words for
                message = message.replace(value, SECRET_PREFIX + name)
    return message


def parse_text(text: str, file: str, secrets: bool = False) -> Config:
    """Validate config text; raises ConfigError listing every problem. secrets=True resolves `secret:NAME`.

    An error about a value that came from a secret shows the reference (`secret:NAME`), never the value.
    """
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM (some Windows editors write one) is not TOML
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = int(m.group(1)) if m else 1
        what = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        problem = Problem(file, line, "(toml)", f"expected valid TOML, found a syntax error: {what}")
        raise ConfigError([problem]) from None
    except RecursionError:  # tomllib recurses once per nesting level
        problem = Problem(file, 1, "(toml)", "expected valid TOML, found arrays or inline tables nested too deeply")
        raise ConfigError([problem]) from None
    lines = key_lines(text)
    found: list[tuple[Loc, str]] = []
    model = _root_model()
    resolved = _with_secrets(raw, file) if secrets else _Secrets(raw, [], {})
    unresolved = {loc for loc, _ in resolved.problems}
    found += resolved.problems
    try:
        parsed = model.model_validate(resolved.raw)
    except ValidationError as e:
        parsed = None
        for err in e.errors(include_url=False):
            loc = _clean_loc(tuple(err["loc"]), resolved.raw)
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = (*loc, "driver" if loc and loc[0] == "device" else "type")
            if loc in unresolved:
                continue  # already reported: the secret could not be read, so its value was not checked
            keys = _keys_for(loc, resolved.raw) if err["type"] == "extra_forbidden" else None
            found.append((loc, _message(dict(err), keys)))
    found += _duplicates(resolved.raw.get("device"), "device", "device")
    found += _duplicates(resolved.raw.get("sink"), "sink", "sink")
    if found or parsed is None:
        problems = []
        for loc, message in found:
            original = _value_at(raw, loc)
            if resolved.values and isinstance(original, str) and original.startswith(SECRET_PREFIX) \
                    and loc not in unresolved:
                message = _hide_secret(message, original)
            problems.append(Problem(file, line_of(lines, loc), _path_text(loc), _scrub(message, resolved.values)))
        problems.sort(key=lambda p: p.line)
        raise ConfigError(problems)
    data: Any = parsed
    return Config(
        source=Path(file).resolve() if file != "<string>" else Path.cwd() / "edge.toml",
        edge=data.edge, store=data.store, api=data.api, discovery=data.discovery, pipeline=data.pipeline,
        devices=list(data.device), sinks=list(data.sink), secret_values=resolved.values,
    )  # the parsed TOML is not kept: nothing reads it, and it held ~0.5 KB per point for the daemon's life


def transform_problem(config: Config, error: Exception, text: str | None = None) -> Problem:
    """A transform that does not load (edge.pipeline.TransformError), as a Problem at its config line.

    text is the config's source (read from config.source when not given). When transforms_dir came from a
    secret, the message names the reference instead of the folder.
    """
    message = str(error)
    lines: dict[Loc, int] = {}
    raw: Any = {}
    try:
        source = text if text is not None else config.source.read_text(encoding="utf-8")
        source = source.removeprefix("\ufeff")
        lines, raw = key_lines(source), tomllib.loads(source)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        pass
    loc: Loc = ("pipeline", "transform")
    for i, t in enumerate(config.pipeline.transform):
        module = t.function.partition(".")[0]
        if repr(t.function) in message or str(config.transforms_path / f"{module}.py") in message:
            loc = ("pipeline", "transform", i, "function")
            break
    folder = _value_at(raw, ("pipeline", "transforms_dir"))
    if isinstance(folder, str) and folder.startswith(SECRET_PREFIX):
        message = message.replace(str(config.transforms_path), folder)
    return Problem(str(config.source), line_of(lines, loc), _path_text(loc), message)


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
