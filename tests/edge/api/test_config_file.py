"""The config file replaced by PUT /v1/config: atomically and durably, whoever else replaces it at the same time."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from edge.api.handlers import _replace_file


def test_concurrent_replacements_publish_one_whole_file_or_the_other(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    a, b = "# A\n" + "a = 1\n" * 20_000, "# B\n" + "b = 2\n" * 100
    for _ in range(50):
        path.write_text("orig\n")
        barrier = threading.Barrier(2)
        failures: list[BaseException] = []

        def replace(text: str, barrier: threading.Barrier = barrier, failures: list[BaseException] = failures) -> None:
            barrier.wait()
            try:
                _replace_file(path, text)
            except BaseException as e:
                failures.append(e)

        threads = [threading.Thread(target=replace, args=(text,)) for text in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert path.read_text() in (a, b)
        assert path.with_name("edge.toml.bak").read_text() in ("orig\n", a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edge.toml", "edge.toml.bak"]  # no temporary file left


def test_a_replaced_file_keeps_mode_and_owner_and_its_directory_is_synced(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "edge.toml"
    path.write_text("old\n")
    os.chmod(path, 0o660)
    owner = (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        owner = (4242, 4343)
        os.chown(path, *owner)
    synced: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    _replace_file(path, "new\n")
    st = path.stat()
    assert path.read_text() == "new\n" and path.with_name("edge.toml.bak").read_text() == "old\n"
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == owner
    assert synced[-1] is True and False in synced  # the file's data, then the directory's entry for it
