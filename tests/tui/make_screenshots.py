"""Write the technician's guide's screenshots (docs/img/tui-*.svg) with Textual's save_screenshot, on the fake daemon.

Run: .venv/bin/python tests/tui/make_screenshots.py [OUTPUT_DIR]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_tui_snapshots import SCREENS
from tui_fakes import fake_app

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
SIZE = (100, 30)


async def shoot(name: str, folder: Path) -> Path:
    app = fake_app(Path(tempfile.mkdtemp()))
    async with app.run_test(size=SIZE) as pilot:
        await SCREENS[name](pilot)
        await pilot.pause()
        app.save_screenshot(f"tui-{name}.svg", str(folder))
    return folder / f"tui-{name}.svg"


async def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in SCREENS:
        print(await shoot(name, folder))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS_IMG))
