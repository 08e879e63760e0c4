"""Every ```python block in docs/*.md runs: each in a fresh interpreter, with a timeout, in a temp folder.

The blocks of one page run in order in one temp folder, so a block may write a file the next one reads
(but shares no variables with it). Top-level `await` is allowed: such a block runs in an asyncio loop.
A block preceded by a `<!-- no-test -->` line (blank lines between
are allowed) is skipped: use it for fragments that need hardware, a network peer or a running daemon.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
BLOCK_TIMEOUT_S = 60
NO_TEST = "<!-- no-test -->"
# Runs one block file: compiled with top-level await allowed, awaited in a fresh loop when it needs one.
RUNNER = """\
import ast, asyncio, inspect, sys
path = sys.argv[1]
sys.argv = [path]
code = compile(open(path, encoding="utf-8").read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
scope = {"__name__": "__main__", "__file__": path}
result = eval(code, scope)
if inspect.iscoroutine(result):
    asyncio.run(result)
"""
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`]*)[^`]*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skipped: bool


def blocks(page: Path) -> list[Block]:
    """Return the fenced code blocks of a Markdown page, in order."""
    lines = page.read_text("utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start = m.group("fence"), i
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        skipped = prev >= 0 and lines[prev].strip() == NO_TEST
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = lines[i].strip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                break
            body.append(lines[i])
            i += 1
        found.append(Block(page, start + 1, m.group("info").lower(), textwrap.dedent("\n".join(body)) + "\n",
                           skipped))
        i += 1
    return found


def python_blocks(page: Path) -> list[Block]:
    """Return the page's ```python blocks (also ```py and ```python3)."""
    return [b for b in blocks(page) if b.lang in ("python", "py", "python3")]


PAGES = sorted(p for p in DOCS.glob("*.md") if python_blocks(p))


def test_block_extraction(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("text\n```python\nprint(1)\n```\n\n<!-- no-test -->\n\n```python\nraise SystemExit(1)\n```\n"
                    "- item\n\n  ```py\n  x = 1\n  ```\n````python\n```\nnested\n```\n````\n```bash\nls\n```\n")
    got = python_blocks(page)
    assert [(b.line, b.skipped, b.code) for b in got] == [
        (2, False, "print(1)\n"), (8, True, "raise SystemExit(1)\n"), (13, False, "x = 1\n"),
        (16, False, "```\nnested\n```\n")]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_docs_python_examples_run(page: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONDONTWRITEBYTECODE="1")
    ran = 0
    for block in python_blocks(page):
        if block.skipped:
            continue
        script = tmp_path / f"block_{block.line}.py"
        script.write_text(block.code)
        try:
            r = subprocess.run([sys.executable, "-c", RUNNER, str(script)], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=BLOCK_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{page.name}:{block.line}: example still running after {BLOCK_TIMEOUT_S} s")
        assert r.returncode == 0, (f"{page.name}:{block.line}: example failed (exit {r.returncode})\n"
                                   f"--- code\n{block.code}--- stderr\n{r.stderr[-4000:]}")
        ran += 1
    if not ran:
        pytest.skip(f"{page.name}: every python example is marked {NO_TEST}")


def test_runner_allows_top_level_await_and_reports_failures(tmp_path: Path) -> None:
    ok = tmp_path / "ok.py"
    ok.write_text("import asyncio\nawait asyncio.sleep(0)\nassert __name__ == '__main__'\n")
    bad = tmp_path / "bad.py"
    bad.write_text("raise SystemExit(3)\n")
    run = [sys.executable, "-c", RUNNER]
    assert subprocess.run([*run, str(ok)], capture_output=True, timeout=BLOCK_TIMEOUT_S).returncode == 0
    assert subprocess.run([*run, str(bad)], capture_output=True, timeout=BLOCK_TIMEOUT_S).returncode == 3
