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
     ":4: store.max_byte: expected no such key, found unknown key (known keys: commit_interval, "
     "dead_letter_max_bytes, full_policy"),
    ("dead-letter budget of 0", '[edge]\nid = "a"\n[store]\ndead_letter_max_bytes = 0\n',
     ":4: store.dead_letter_max_bytes: expected a size above 0 such as '64MiB' (dead letters always have a budget; "
     "leave the key out for 10 % of max_bytes), found 0"),
    ("bad dead-letter budget", '[edge]\nid = "a"\n[store]\ndead_letter_max_bytes = "lots"\n',
     ":4: store.dead_letter_max_bytes: expected a size like '64MiB', '1GiB', found 'lots'"),
    ("bad size", '[edge]\nid = "a"\n[store]\nmax_bytes = "lots"\n',
     ":4: store.max_bytes: expected a size like '64MiB', '1GiB', found 'lots'"),
    ("bad duration", '[edge]\nid = "a"\n[store]\nmax_age = "3 fortnights"\n',
     ":4: store.max_age: expected a duration like '500ms', '1s', '5m', '30d', found '3 fortnights'"),
    ("bad policy", '[edge]\nid = "a"\n[store]\nfull_policy = "panic"\n',
     ":4: store.full_policy: expected 'drop_oldest' or 'reject_new', found 'panic'"),
    ("wrong type", '[edge]\nid = "a"\n[discovery]\nadvertise = "yes please"\n',
     ":4: discovery.advertise: expected a valid boolean"),
    ("bad listen", '[edge]\nid = "a"\n[api]\nlisten = "localhost"\n', ":4: api.listen: expected HOST:PORT"),
    ("listen port not ASCII digits", '[edge]\nid = "a"\n[api]\nlisten = "127.0.0.1:²"\n',
     ":4: api.listen: expected HOST:PORT such as '127.0.0.1:8470', found '127.0.0.1:²'"),
    ("nested too deeply", '[edge]\nid = "a"\nx = ' + "[" * 3000 + "]" * 3000 + "\n",
     ":1: (toml): expected valid TOML, found arrays or inline tables nested too deeply"),
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


def test_the_dead_letter_budget_defaults_to_a_tenth_of_max_bytes() -> None:
    store = parse_text('[edge]\nid = "a"\n[store]\nmax_bytes = "200MiB"\n', "f.toml").store
    assert store.dead_letter_max_bytes is None and store.options().dead_letter_budget == 20 * 1024**2
    store = parse_text('[edge]\nid = "a"\n[store]\ndead_letter_max_bytes = "64MiB"\n', "f.toml").store
    assert store.options().dead_letter_budget == 64 * 1024**2


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


def test_a_leading_utf8_bom_is_ignored(tmp_path: Path) -> None:
    code, out = check(tmp_path, "\ufeff" + GOOD)
    assert code == 0, out
    code, out = check(tmp_path, "\ufeff" + GOOD.replace('interval = "500ms"', 'interval = "soon"'))
    assert code == 1 and f"{tmp_path / 'edge.toml'}:14: device[0].interval: expected a duration" in out, out


SECRET_SINK = """\
[edge]
id = "a"
data_dir = "{data}"

[[sink]]
name = "hook"
type = "http"
url = "secret:hookurl"
"""


def test_check_validates_secret_references_as_the_daemon_would(tmp_path: Path) -> None:
    """`edge check` resolves `secret:NAME` like the daemon: a set secret passes, an unusable one is named."""
    from edge.secrets import SecretStore

    cfg = tmp_path / "edge.toml"
    code, out = check(tmp_path, SECRET_SINK.format(data=tmp_path))
    assert code == 1
    assert out.splitlines() == [f"{cfg}:8: sink[0].url: expected a secret that is set, found secret:hookurl, which is "
                                f"not (secrets not set: run `edge secrets set hookurl` on this appliance)"]
    SecretStore(tmp_path).set("hookurl", "https://central.example.com/in")
    code, out = check(tmp_path, SECRET_SINK.format(data=tmp_path))
    assert code == 0 and "ok (0 devices, 1 sinks)" in out, out
    # Tools that need no secret read such a config too (here: no store yet, rather than "expected http://...").
    result = CliRunner().invoke(cli, ["store", "stats", "-c", str(cfg)])
    assert result.exit_code == 1 and "no store in" in result.output and "sink[0]" not in result.output, result.output
    # The key that decrypts them is gone: said as such, at the reference, not as "expected http://...".
    (tmp_path / "secrets.key").rename(tmp_path / "elsewhere.key")
    code, out = check(tmp_path, SECRET_SINK.format(data=tmp_path))
    assert code == 1 and "expected http" not in out
    assert out.startswith(f"{cfg}:8: sink[0].url: expected a secret that can be decrypted, found secret:hookurl, "
                          f"which cannot: secrets key file {tmp_path / 'secrets.key'} is missing"), out
    code, out = check(tmp_path, SECRET_SINK.format(data=tmp_path) + '[secrets]\nkey_file = "elsewhere.key"\n')
    assert code == 0, out
    # An unreadable store, and a reference that is no valid name; the rest of the file is still checked.
    (tmp_path / "secrets.json").write_text("{not json")
    code, out = check(tmp_path, SECRET_SINK.format(data=tmp_path).replace('"hook"', '"hook!"'))
    assert code == 1
    assert f"{cfg}:6: sink[0].name: expected a name matching" in out
    assert f"{cfg}:8: sink[0].url: expected a readable secrets store for secret:hookurl, found: " in out
    code, out = check(tmp_path, SECRET_SINK.format(data=tmp_path).replace("secret:hookurl", "secret:hook url"))
    assert out.splitlines() == [f"{cfg}:8: sink[0].url: expected secret:NAME with a NAME of 1-64 of "
                                f"A-Z a-z 0-9 . _ -, found 'secret:hook url'"]


def test_a_secret_value_never_appears_in_an_error(tmp_path: Path) -> None:
    """An error about a value that came from a secret names the reference; the value is not shown, in part or whole."""
    from edge.secrets import SecretStore

    store = SecretStore(tmp_path)
    store.set("hookurl", "ftp://admin:Hunter2Pw@example.com/x")
    store.set("retry", "MyS3cretRetryValue")
    store.set("listen", "127.0.0.1:Hunter2Pw")
    text = (SECRET_SINK.format(data=tmp_path) + 'retry_max = "secret:retry"\n'
            '[[sink]]\nname = "hook"\ntype = "http"\nurl = "http://127.0.0.1:9/in"\n')
    text = text.replace('data_dir = ', '[api]\nlisten = "secret:listen"\n[edge]\nid = "a"\ndata_dir = ', 1)
    text = text.replace('[edge]\nid = "a"\n[api]', "[api]", 1)
    cfg = tmp_path / "edge.toml"
    with pytest.raises(ConfigError) as e:
        parse_text(text, str(cfg), secrets=True)
    shown = str(e.value)
    assert shown.splitlines() == [
        f"{cfg}:2: api.listen: expected HOST:PORT such as '127.0.0.1:8470', found the value of secret:listen "
        "(not shown)",
        f"{cfg}:10: sink[0].url: expected http://host/path or https://host/path, found the value of secret:hookurl "
        "(not shown)",
        f"{cfg}:11: sink[0].retry_max: expected a duration like '500ms', '1s', '5m', '30d', found the value of "
        "secret:retry (not shown)",
        f"{cfg}:13: sink[1].name: expected a unique sink name, found 'hook' again (first at sink[0])",
    ], shown
    # The same through the real commands: `edge check` and the daemon's start.
    cfg.write_text(text)
    for command in ("check", "run"):
        run = subprocess.run([sys.executable, "-m", "edge", command, "-c", str(cfg)], capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 1 and "secret:hookurl" in run.stdout + run.stderr, run
        for part in ("Hunter2Pw", "admin", "example.com", "MyS3cret"):
            assert part not in run.stdout + run.stderr, (command, part)
    # A value that came from a secret and is quoted by a check spanning several keys is replaced, too.
    store.set("fmt", "ruuvi")
    text = (f'[edge]\nid = "a"\ndata_dir = "{tmp_path}"\n[[device]]\nname = "cold"\ndriver = "ble"\n'
            'address = "AA:BB:CC:DD:EE:FF"\nformat = "secret:fmt"\nbindkey = "00112233445566778899aabbccddeeff"\n')
    with pytest.raises(ConfigError) as e:
        parse_text(text, str(cfg), secrets=True)
    assert str(e.value) == f"{cfg}:4: device[0]: bindkey: only for format = 'bthome', found format = secret:fmt"
    # A valid config keeps the values only to scrub messages made later (a sink that cannot be created).
    store.set("goodhook", "https://example.com/in?token=Hunter2Pw")
    ok = parse_text(SECRET_SINK.format(data=tmp_path).replace("secret:hookurl", "secret:goodhook"), str(cfg),
                    secrets=True)
    assert ok.scrub_secrets("POST https://example.com/in?token=Hunter2Pw failed") == "POST secret:goodhook failed"


def test_a_transform_that_does_not_load_is_named_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "transforms").mkdir()
    (tmp_path / "transforms" / "ok.py").write_text("def f(r):\n    return r\n")
    (tmp_path / "transforms" / "broken.py").write_text("import nonexistent_mod\n")
    base = f'[edge]\nid = "a"\ndata_dir = "{tmp_path}"\n[[pipeline.transform]]\nfunction = "ok.f"\n'
    code, out = check(tmp_path, base)
    assert code == 0, out
    code, out = check(tmp_path, base + '[[pipeline.transform]]\nfunction = "broken.f"\n')
    assert code == 1
    assert out.splitlines() == [f"{tmp_path / 'edge.toml'}:7: pipeline.transform[1].function: "
                                f"{tmp_path / 'transforms' / 'broken.py'}: failed to import: "
                                "ModuleNotFoundError: No module named 'nonexistent_mod'"]


def test_secret_references_are_resolved_for_the_daemon_only(tmp_path: Path) -> None:
    from edge.secrets import SecretStore

    text = (f'[edge]\nid = "a"\ndata_dir = "{tmp_path}"\n[pipeline]\ntransforms_dir = "secret:tdir"\n')
    assert parse_text(text, str(tmp_path / "edge.toml")).pipeline.transforms_dir == "secret:tdir"
    with pytest.raises(ConfigError) as e:
        parse_text(text, str(tmp_path / "edge.toml"), secrets=True)
    assert str(e.value) == (f"{tmp_path / 'edge.toml'}:5: pipeline.transforms_dir: expected a secret that is set, "
                            "found secret:tdir, which is not (secrets not set: run `edge secrets set tdir` on this "
                            "appliance)")
    SecretStore(str(tmp_path)).set("tdir", "/opt/transforms")
    assert parse_text(text, str(tmp_path / "edge.toml"), secrets=True).pipeline.transforms_dir == "/opt/transforms"
    # A transform that does not load names the folder by its reference.
    (tmp_path / "edge.toml").write_text(text + '[[pipeline.transform]]\nfunction = "gone.f"\n')
    result = CliRunner().invoke(cli, ["check", "-c", str(tmp_path / "edge.toml")])
    assert result.exit_code == 1 and "/opt/transforms" not in result.output
    assert "pipeline.transform[0].function: transform 'gone.f': expected a file secret:tdir/gone.py" in result.output
