"""docs/sinks.md: its config example validates, and its example receiver takes what the HTTP sink sends."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from aiohttp import web
from sink_helpers import EDGE, SinkRunner, eventually, fill
from sink_peers import free_port

from edge.config.loader import parse_text
from edge.store import Store
from sync.http import HttpSink
from sync.http_config import HttpSinkConfig
from sync.mqtt_config import MqttSinkConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "sinks.md"


def block(lang: str, containing: str) -> str:
    for code in re.findall(rf"```{lang}\n(.*?)```", DOC.read_text("utf-8"), re.S):
        if containing in code:
            return str(code)
    raise AssertionError(f"docs/sinks.md lost its {lang} block with {containing!r}")


def test_config_example_validates() -> None:
    cfg = parse_text(block("toml", "[[sink]]"), "sinks.md")
    plant, erp = cfg.sinks
    assert isinstance(plant, MqttSinkConfig) and plant.per_device and plant.tls and plant.port == 8883
    assert isinstance(erp, HttpSinkConfig) and erp.gzip and erp.max_bytes_per_s == 50_000
    assert erp.max_age == 86400 and erp.filter == ["meter*/*"]


async def test_example_receiver_takes_gzip_batches(store: Store, runner: SinkRunner, tmp_path: Path) -> None:
    code = block("python", "web.run_app")
    namespace: dict[str, object] = {}
    exec(code.rsplit("web.run_app", 1)[0], namespace)  # everything but serving forever
    app = namespace["app"]
    assert isinstance(app, web.Application)
    site = web.AppRunner(app)
    await site.setup()
    port = free_port()
    await web.TCPSite(site, "127.0.0.1", port).start()
    try:
        seqs = await fill(store, 120)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            sink = HttpSink(HttpSinkConfig(name="erp", type="http", url=f"http://127.0.0.1:{port}/api/ingest",
                                           gzip=True, batch_max=50),
                            edge_id=EDGE, store=store, data_dir=str(tmp_path))
            runner.start(sink)
            await eventually(lambda: store.cursor_sync("erp") == seqs[-1])
        assert namespace["seen"] == {(EDGE, s) for s in seqs}
        assert out.getvalue().count("temperature") == 120
    finally:
        await site.cleanup()
