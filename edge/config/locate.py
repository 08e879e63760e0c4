"""Find the line of a key path (e.g. device[1].point[0].type) in TOML source text, for error messages.

TOML parsers do not keep positions, so this follows table headers and key assignments line by line.
It handles the shapes config files use (tables, arrays of tables, dotted keys, multi-line arrays/strings);
anything it cannot place falls back to the nearest enclosing table's header line.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_key(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p.strip("\"'") for p in parts]


def key_lines(source: str) -> dict[Path, int]:
    """Map every table and key path found in the source to its 1-based line number."""
    lines: dict[Path, int] = {}
    counters: dict[tuple[str | int, ...], int] = {}  # array-of-tables path (with parent indices) -> last index
    current: Path = ()
    in_multiline: str | None = None
    depth = 0
    for number, line in enumerate(source.splitlines(), start=1):
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        if depth > 0:
            depth += line.count("[") - line.count("]")
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            names = _split_key(header.group(2))
            resolved: list[str | int] = []
            # Walk the dotted name, inserting the current index of each array of tables on the way.
            for i, name in enumerate(names):
                resolved.append(name)
                key = tuple(resolved)
                is_last = i == len(names) - 1
                if is_last and header.group(1) == "[[":
                    counters[key] = counters.get(key, -1) + 1
                    # a new element resets the counters of arrays nested under the old one
                    for k in [k for k in counters if len(k) > len(key) and k[: len(key)] == key]:
                        del counters[k]
                    resolved.append(counters[key])
                elif key in counters:
                    resolved.append(counters[key])
            current = tuple(resolved)
            lines.setdefault(current, number)
            continue
        assignment = _KEY.match(line)
        if assignment:
            path = current + tuple(_split_key(assignment.group(1)))
            lines.setdefault(path, number)
            rest = line[assignment.end():]
            for quote in ('"""', "'''"):
                if rest.count(quote) == 1:
                    in_multiline = quote
            if not in_multiline:
                stripped = re.sub(r"""("[^"]*"|'[^']*')""", "", rest.split("#", 1)[0])
                depth = stripped.count("[") - stripped.count("]")
    return lines


def line_of(lines: dict[Path, int], path: Path) -> int:
    """The line of `path`, or of its nearest recorded ancestor; 1 when nothing matches."""
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1
