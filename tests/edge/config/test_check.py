"""`edge check`: valid configs pass; each broken config gives a precise FILE:LINE: key.path line and exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.cli import cli
from edge.config import ConfigError, parse_text

GOOD = """\
# a comment
[edge]
id = "site-a"
data_dir = "/tmp/edge-test"

[store]
max_bytes = "64MiB"
max_age = "30d"
commit_interval = "250ms"

[[device]]
name = "sim"
driver = "simulator"
interval = "500ms"

  [[device.point]]
  name = "t"
  signal = "sine"
  scale = 0.1
  unit = "degC"
"""

# (name, config text, expected substring of the single line printed: "LINE: path: ...")
BROKEN = [
    ("bad toml", '[edge]\nid = "a"\nname = = 3\n', ":3: (toml): expected valid TOML"),
    ("unclosed table", '[edge\nid = "a"\n', ":1: (toml): expected valid TOML"),
    ("missing edge id", "[edge]\ndata_dir = '/x'\n", ":1: edge.id: expected a value (this key is required)"),
    ("missing edge table", '[store]\nmax_bytes = "1GiB"\n', ":1: edge: expected a value (this key is required)"),
    ("bad edge id", '[edge]\nid = "site a!"\n', ":2: edge.id: expected a name matching"),
    ("unknown top key", '[edge]\nid = "a"\n[stroe]\nmax_bytes = 1\n', ":3: stroe: expected no such key"),
    ("unknown store key", '[edge]\nid = "a"\n[store]\nmax_byte = "1GiB"\n',
     ":4: store.max_byte: expected no such key, found unknown key (known keys: commit_interval, full_policy"),
    ("bad size", '[edge]\nid = "a"\n[store]\nmax_bytes = "lots"\n',
     ":4: store.max_bytes: expected a size like '64MiB', '1GiB', found 'lots'"),
    ("bad duration", '[edge]\nid = "a"\n[store]\nmax_age = "3 fortnights"\n',
     ":4: store.max_age: expected a duration like '500ms', '1s', '5m', '30d', found '3 fortnights'"),
    ("bad policy", '[edge]\nid = "a"\n[store]\nfull_policy = "panic"\n',
     ":4: store.full_policy: expected 'drop_oldest' or 'reject_new', found 'panic'"),
    ("wrong type", '[edge]\nid = "a"\n[discovery]\nadvertise = "yes please"\n',
     ":4: discovery.advertise: expected a valid boolean"),
    ("bad listen", '[edge]\nid = "a"\n[api]\nlisten = "localhost"\n', ":4: api.listen: expected HOST:PORT"),
    ("unknown driver", '[edge]\nid = "a"\n[[device]]\nname = "x"\ndriver = "profibus"\n',
     ":5: device[0].driver: expected one of"),
    ("missing driver", '[edge]\nid = "a"\n[[device]]\nname = "x"\n', ":3: device[0].driver: expected one of"),
    ("duplicate device", '[edge]\nid = "a"\n[[device]]\nname = "x"\ndriver = "simulator"\n'
     '[[device]]\nname = "x"\ndriver = "simulator"\n',
     ":7: device[1].name: expected a unique device name, found 'x' again (first at device[0])"),
    ("duplicate point", '[edge]\nid = "a"\n[[device]]\nname = "x"\ndriver = "simulator"\n'
     '[[device.point]]\nname = "p"\n[[device.point]]\nname = "p"\n',
     ":3: device[0].point: expected point names unique within the device, found 'p' twice"),
    ("unknown point key", '[edge]\nid = "a"\n[[device]]\nname = "x"\ndriver = "simulator"\n'
     '  [[device.point]]\n  name = "p"\n  sclae = 2\n', ":8: device[0].point[0].sclae: expected no such key"),
    ("negative interval", '[edge]\nid = "a"\n[[device]]\nname = "x"\ndriver = "simulator"\ninterval = "0s"\n',
     ":6: device[0].interval: expected greater than 0"),
    ("point wrong type", '[edge]\nid = "a"\n[[device]]\nname = "x"\ndriver = "simulator"\n'
     '[[device.point]]\nname = "p"\nscale = "ten"\n', ":8: device[0].point[0].scale: expected a valid number"),
    ("point scale nan", '[edge]\nid = "a"\n[[device]]\nname = "x"\ndriver = "simulator"\n'
     '[[device.point]]\nname = "p"\nscale = nan\n',
     ":8: device[0].point[0].scale: expected a finite number, found nan"),
    ("point offset inf", '[edge]\nid = "a"\n[[device]]\nname = "x"\ndriver = "simulator"\n'
     '[[device.point]]\nname = "p"\noffset = -inf\n',
     ":8: device[0].point[0].offset: expected a finite number, found -inf"),
    ("point deadband inf", '[edge]\nid = "a"\n[[device]]\nname = "x"\ndriver = "simulator"\n'
     '[[device.point]]\nname = "p"\ndeadband = inf\n',
     ":8: device[0].point[0].deadband: expected a finite number, found inf"),
    ("modbus scale inf", '[edge]\nid = "a"\n[[device]]\nname = "x"\ndriver = "modbus-tcp"\nhost = "127.0.0.1"\n'
     '[[device.point]]\nname = "p"\naddress = 1\nscale = inf\n',
     ":10: device[0].point[0].scale: expected a finite number, found inf"),
    ("device is not a table list", 'device = 3\n[edge]\nid = "a"\n', ":1: device: expected a valid list, found 3"),
    ("key under the wrong table", '[edge]\nid = "a"\ninterval = "1s"\n', ":3: edge.interval: expected no such key"),
    ("bad transform ref", '[edge]\nid = "a"\n[[pipeline.transform]]\nfunction = "nodot"\n',
     ":4: pipeline.transform[0].function: expected a name matching"),
]


def check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    return result.exit_code, result.output


def test_good_config_passes(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD)
    assert code == 0, out
    assert "ok (1 devices, 0 sinks)" in out


@pytest.mark.parametrize(("name", "text", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_gives_precise_line(tmp_path: Path, name: str, text: str, expected: str) -> None:
    code, out = check(tmp_path, text)
    assert code == 1, out
    assert "Traceback" not in out
    assert f"{tmp_path / 'edge.toml'}{expected}" in out, out


def test_every_problem_is_listed_in_line_order(tmp_path: Path) -> None:
    text = ('[edge]\nid = "a"\n[store]\nmax_age = "x"\n[[device]]\nname = "d"\ndriver = "simulator"\n'
            'interval = "soon"\ncolour = 1\n')
    with pytest.raises(ConfigError) as e:
        parse_text(text, "f.toml")
    assert [str(p).split(": ")[0] for p in e.value.problems] == ["f.toml:4", "f.toml:8", "f.toml:9"]


def test_missing_file_and_binary_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["check", "-c", str(tmp_path / "absent.toml")])
    assert result.exit_code == 1 and "expected a config file, found no such file" in result.output
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[edge]")
    result = CliRunner().invoke(cli, ["check", "-c", str(tmp_path / "bin.toml")])
    assert result.exit_code == 1 and "expected UTF-8 text" in result.output


def test_real_command_exit_codes(tmp_path: Path) -> None:
    """Through the console entry point: bad config → 1, bad arguments → 1, never a traceback."""
    (tmp_path / "edge.toml").write_text('[edge]\nid = 5\n')
    run = subprocess.run([sys.executable, "-m", "edge", "check", "-c", str(tmp_path / "edge.toml")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f"{tmp_path / 'edge.toml'}:2: edge.id: expected a valid string, found 5" in run.stdout
    run = subprocess.run([sys.executable, "-m", "edge", "check", "--no-such-flag"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1 and "Traceback" not in run.stderr


def test_secret_references_are_resolved_for_the_daemon_only(tmp_path: Path) -> None:
    from edge.secrets import SecretStore

    text = (f'[edge]\nid = "a"\ndata_dir = "{tmp_path}"\n[pipeline]\ntransforms_dir = "secret:tdir"\n')
    assert parse_text(text, str(tmp_path / "edge.toml")).pipeline.transforms_dir == "secret:tdir"
    with pytest.raises(ConfigError) as e:
        parse_text(text, str(tmp_path / "edge.toml"), secrets=True)
    assert "(secrets): expected every referenced secret to be set" in str(e.value) and "tdir" in str(e.value)
    SecretStore(str(tmp_path)).set("tdir", "/opt/transforms")
    assert parse_text(text, str(tmp_path / "edge.toml"), secrets=True).pipeline.transforms_dir == "/opt/transforms"
