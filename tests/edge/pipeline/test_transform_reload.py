"""Transform files across reloads: an unchanged file keeps its module (and its state) and is not imported again;
a changed one is imported once and its old module dropped; one that exits or raises any BaseException at import
refuses the reload (the daemon runs on) and fails the start as a config error (exit 1), never a traceback."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any

import pytest
from edgeproc import EdgeProcess, write_config

from edge.pipeline import TransformError, TransformSet, load_transforms
from edge.testing import reading, run_transform

STATEFUL = """\
from pathlib import Path
with open(Path(__file__).with_name("imports.log"), "a") as log:
    log.write("{tag}\\n")
_last = {{}}


def only_changes(r):
    key = (r.device, r.point)
    if _last.get(key) == r.value:
        return None
    _last[key] = r.value
    return r
"""
EXITS_AT_IMPORT = {
    "sys.exit": "import sys\nsys.exit('oops')\n",
    "argparse": "import argparse\nargparse.ArgumentParser().parse_args(['--no-such-flag'])\n",
    "SystemExit": "raise SystemExit\n",
    "KeyboardInterrupt": "raise KeyboardInterrupt('at import')\n",
    "GeneratorExit": "raise GeneratorExit\n",
    "CancelledError": "import asyncio\nraise asyncio.CancelledError()\n",
    "BaseException": "raise BaseException('custom')\n",
}


def imports(folder: Path) -> list[str]:
    log = folder / "imports.log"
    return log.read_text().split() if log.exists() else []


def module_of(tset: TransformSet) -> Any:
    return sys.modules[tset.transforms[0].fn.__module__]


def transform_modules(file: Path) -> list[str]:
    """The names in sys.modules of the transform modules imported from file."""
    return [name for name, m in list(sys.modules.items())
            if name.startswith("edge_transforms_") and getattr(m, "__file__", None) == str(file)]


def passed(tset: TransformSet, *values: object) -> list[object]:
    return [r.value for v in values for r in tset.apply(reading("d", "p", v))]


# -- an unchanged file keeps its module; a changed one is imported once, and its old module goes -------------

def test_an_unchanged_file_is_not_imported_again_and_keeps_its_state(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(STATEFUL.format(tag="v1"))
    first = load_transforms(tmp_path, [("t.only_changes", ["*"])])
    assert passed(first, 1.0, 1.0) == [1.0]
    for _ in range(10):  # reloads changing nothing here (a sink's URL...), and a PUT's prepare() before each
        again = load_transforms(tmp_path, [("t.only_changes", ["*"])])
    assert again.transforms[0].fn is first.transforms[0].fn
    assert passed(again, 1.0, 2.0) == [2.0]  # the state went on: 1.0 was seen before the reloads
    assert imports(tmp_path) == ["v1"]
    assert transform_modules(tmp_path / "t.py") == [module_of(first).__name__]  # one module, not one per reload


def test_a_changed_file_is_imported_once_and_its_old_module_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(STATEFUL.format(tag="v1"))
    old = load_transforms(tmp_path, [("t.only_changes", ["*"])])
    assert passed(old, 1.0) == [1.0]
    old_module = weakref.ref(module_of(old))
    (tmp_path / "t.py").write_text(STATEFUL.format(tag="v2"))
    prepared = load_transforms(tmp_path, [("t.only_changes", ["*"])])  # PUT /v1/config: prepare()...
    applied = load_transforms(tmp_path, [("t.only_changes", ["*"])])  # ...then the reload
    assert imports(tmp_path) == ["v1", "v2"]  # the new version once, not twice
    assert applied.transforms[0].fn is prepared.transforms[0].fn is not old.transforms[0].fn
    assert passed(applied, 1.0) == [1.0]  # a new module: its state starts over
    assert transform_modules(tmp_path / "t.py") == [module_of(applied).__name__]
    del old, prepared
    gc.collect()
    assert old_module() is None  # nothing holds the old version any more


def test_a_transform_taken_out_of_the_config_drops_its_module(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def f(r):\n    return r\n")
    (tmp_path / "b.py").write_text("TABLE = bytearray(1000)\ndef f(r):\n    return r\n")
    both = load_transforms(tmp_path, [("a.f", ["*"]), ("b.f", ["*"])])
    b_module = weakref.ref(sys.modules[both.transforms[1].fn.__module__])
    a_only = load_transforms(tmp_path, [("a.f", ["*"])])
    assert a_only.transforms[0].fn is both.transforms[0].fn
    assert transform_modules(tmp_path / "b.py") == []
    del both
    gc.collect()
    assert b_module() is None


def test_a_same_size_edit_in_the_same_second_takes_effect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What runs is what was hashed: not a .pyc that Python judges fresh by mtime and size alone."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as on an appliance (no PYTHONDONTWRITEBYTECODE)
    path = tmp_path / "t.py"
    path.write_text("def f(r):\n    r.value = 1\n    return r\n")
    stat = path.stat()
    assert passed(load_transforms(tmp_path, [("t.f", ["*"])]), 0) == [1]
    path.write_text("def f(r):\n    r.value = 2\n    return r\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert passed(load_transforms(tmp_path, [("t.f", ["*"])]), 0) == [2]


def test_run_transform_starts_from_an_empty_module_state_each_call(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(STATEFUL.format(tag="x"))
    for _ in range(2):
        out = run_transform(tmp_path / "t.py", "only_changes", reading("d", "p", 1.0), reading("d", "p", 1.0))
        assert [r.value for r in out] == [1.0]
    assert transform_modules(tmp_path / "t.py") == []  # one-off modules stay out of sys.modules


# -- a module that exits (or raises any BaseException) at import refuses the load ---------------------------

@pytest.mark.parametrize("body", EXITS_AT_IMPORT.values(), ids=EXITS_AT_IMPORT.keys())
def test_a_module_exiting_at_import_refuses_the_load_and_the_running_one_stays(tmp_path: Path, body: str) -> None:
    good = "def f(r):\n    return r\n"
    (tmp_path / "t.py").write_text(good)
    running = load_transforms(tmp_path, [("t.f", ["*"])])
    (tmp_path / "t.py").write_text(body + good)
    with pytest.raises(TransformError) as e:
        load_transforms(tmp_path, [("t.f", ["*"])])
    assert str(e.value).startswith(f"{tmp_path / 't.py'}: failed to import: ")
    assert transform_modules(tmp_path / "t.py") == [module_of(running).__name__]  # the failed import left none
    (tmp_path / "t.py").write_text(good)  # put back as it was: the running module is still the one
    assert load_transforms(tmp_path, [("t.f", ["*"])]).transforms[0].fn is running.transforms[0].fn


def test_sys_exit_at_import_says_what_happened(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(EXITS_AT_IMPORT["argparse"] + "def f(r):\n    return r\n")
    with pytest.raises(TransformError) as e:
        load_transforms(tmp_path, [("t.f", ["*"])])
    assert str(e.value) == (f"{tmp_path / 't.py'}: failed to import: SystemExit: the module called sys.exit(2) "
                            "while being imported (argparse does on a command line it does not accept); run "
                            'command-line code only under `if __name__ == "__main__":`')


# -- the daemon ---------------------------------------------------------------------------------------------

def config_with(tmp_path: Path, function: str) -> Path:
    return write_config(tmp_path, '[[device]]\nname = "a"\ndriver = "simulator"\ninterval = "50ms"\n\n'
                                  f'[[pipeline.transform]]\nfunction = "{function}"\nmatch = ["a/*"]\n')


def call(edge: EdgeProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    try:
        return 200, edge.request(method, path, body)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_daemon_imports_a_transform_once_per_content_across_put_and_reload(tmp_path: Path) -> None:
    folder = tmp_path / "transforms"
    folder.mkdir()
    (folder / "t.py").write_text(STATEFUL.format(tag="v1"))
    cfg = config_with(tmp_path, "t.only_changes")
    text = cfg.read_text()
    edge = EdgeProcess(cfg).start()
    try:
        assert imports(folder) == ["v1"]
        assert call(edge, "PUT", "/v1/config", {"text": text + "# only a comment changed\n"})[0] == 200
        assert call(edge, "POST", "/v1/reload")[0] == 200
        assert imports(folder) == ["v1"]  # neither the PUT (prepare + reload) nor the reload imported it again
        (folder / "t.py").write_text(STATEFUL.format(tag="v2"))
        assert call(edge, "PUT", "/v1/config", {"text": text})[0] == 200
        assert imports(folder) == ["v1", "v2"]  # once, not once for the PUT's check and once for its reload
    finally:
        assert edge.stop() == 0


def test_a_reload_to_a_module_exiting_at_import_is_refused_and_the_daemon_runs_on(tmp_path: Path) -> None:
    folder = tmp_path / "transforms"
    folder.mkdir()
    (folder / "t.py").write_text("def f(r):\n    return r\n")
    cfg = config_with(tmp_path, "t.f")
    text = cfg.read_text()
    edge = EdgeProcess(cfg).start()
    try:
        (folder / "t.py").write_text("import sys\nsys.exit('oops')\ndef f(r):\n    return r\n")
        for method, path, body in (("POST", "/v1/reload", None), ("PUT", "/v1/config", {"text": text + "#\n"})):
            code, answer = call(edge, method, path, body)
            assert code == 422, answer
            assert f"{folder / 't.py'}: failed to import: SystemExit: " in answer["error"], answer
        assert edge.get("/v1/health", auth=False)["status"] == "ok"
        assert cfg.read_text() == text  # the refused PUT left the file as it was
    finally:
        assert edge.stop() == 0


def test_a_module_exiting_at_import_fails_the_start_with_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "transforms").mkdir()
    (tmp_path / "transforms" / "t.py").write_text(EXITS_AT_IMPORT["argparse"] + "def f(r):\n    return r\n")
    cfg = config_with(tmp_path, "t.f")
    run = subprocess.run([sys.executable, "-m", "edge", "run", "-c", str(cfg)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1, run
    line = cfg.read_text().splitlines().index('function = "t.f"') + 1
    problem = f"{cfg}:{line}: pipeline.transform[0].function: {tmp_path / 'transforms' / 't.py'}: failed to import: "
    # argparse's own usage lines come first (it prints them before it exits); then the config error, no traceback
    assert run.stderr.splitlines()[-1].startswith(problem + "SystemExit: the module called sys.exit(2)"), run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "data" / "store.sqlite").exists()


def test_a_reloaded_daemon_frees_the_old_version_of_a_changed_transform(tmp_path: Path) -> None:
    """start() freezes what it loaded (gc.freeze); the module a changed file replaces must not stay there."""
    import asyncio

    from edge.config import load_config
    from edge.daemon import Daemon

    folder = tmp_path / "transforms"
    folder.mkdir()
    (folder / "t.py").write_text(STATEFUL.format(tag="v1"))
    cfg = config_with(tmp_path, "t.only_changes")

    async def scenario() -> None:
        d = Daemon(load_config(cfg, True))
        await d.start()
        try:
            old = weakref.ref(sys.modules[d.pipeline.transforms.transforms[0].fn.__module__])
            (folder / "t.py").write_text(STATEFUL.format(tag="v2"))
            await d.reload()
            assert imports(folder) == ["v1", "v2"]
            gc.collect()
            assert old() is None, "the old module is still alive"
            (folder / "t.py").unlink()  # and a transform taken out of the config releases its module
            cfg.write_text(cfg.read_text().split("[[pipeline.transform]]")[0])
            current = weakref.ref(sys.modules[d.pipeline.transforms.transforms[0].fn.__module__])
            await d.reload()
            gc.collect()
            assert current() is None, "the module of a removed transform is still alive"
        finally:
            await d.stop("test over")
            gc.unfreeze()

    asyncio.run(scenario())
