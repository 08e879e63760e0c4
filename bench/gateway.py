"""End-to-end benchmark of the whole appliance against the ThingsBoard IoT Gateway bar.

Modbus TCP simulator (subprocess, from bench/poll.py) → `edge run` (subprocess) → mosquitto (subprocess,
from tests/sync/sink_peers.py) → a paho subscriber in this process that records every reading it gets.

Measured in one run:
  1. baseline: a bare pymodbus client loop (subprocess) doing the same reads (one N-register read per device
     per interval) for a few seconds: the raw protocol cost that the daemon's CPU is compared with;
  2. steady state: points/s at the subscriber vs asked, polls vs asked (/v1/devices), seq duplicates and
     gaps, merged polls (every (device, ts) must hold exactly one reading of every point), the daemon's CPU
     (/proc/PID/stat) per 100k points and share of a core, its VmRSS and VmHWM;
  3. broker outage: mosquitto stopped for --outage seconds and started again on the same port; seconds from
     its return to the first message at the subscriber, time to catch up, and no seq missing.

    .venv/bin/python bench/gateway.py                           # 50 devices × 50 registers @ 100 ms, 30 s
    .venv/bin/python bench/gateway.py --seconds 10 --units-per-endpoint 50   # all devices on one endpoint
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench", ROOT / "tests", ROOT / "tests" / "sync"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from edgeproc import EdgeProcess, write_config  # noqa: E402  (tests/edgeproc.py: `edge run` by PID)
from poll import free_port, process_cpu, start_server  # noqa: E402  (bench/poll.py: the simulator)

ASKED_DEVICES = 50
ASKED_REGISTERS = 50
ASKED_INTERVAL = 0.1
DEFAULT_SECONDS = 30.0
BASELINE_SECONDS = 8.0
OUTAGE_SECONDS = 10.0
WARMUP = 3.0
SETTLE = 1.0
CATCH_UP_TIMEOUT = 30.0
MAX_READ = 125  # registers per Modbus read request

# The bar (developers' guide): ThingsBoard IoT Gateway 3.8.5 at 50 × 50 @ 100 ms.
TB_DELIVERED = (0.62, 0.69)  # fraction of the asked points delivered
TB_CORE = 0.70  # share of one core
TB_RSS_MB = 73.0
TB_RECONNECT_S = 15.0
BAR_RSS_MB = 60.0
BAR_RECONNECT_S = 2.0
BAR_CPU_FRACTION = 0.1  # of ThingsBoard's CPU per point


def tb_cpu_per_100k(asked: float) -> float:
    """ThingsBoard's CPU seconds per 100k delivered points (70 % of a core for ~65.5 % of the asked rate)."""
    return TB_CORE / (asked * sum(TB_DELIVERED) / 2) * 100_000


# -- the subscriber ----------------------------------------------------------------------------------------

def _subscriber_base() -> type:
    from sink_peers import Subscriber  # paho + cryptography: imported only where a broker is used

    return Subscriber


@dataclass
class Tally:
    """What the subscriber received, kept small: a seq bitmap and per-(device, ts) counts and point masks."""

    seen: bytearray = field(default_factory=lambda: bytearray(1 << 20))
    readings: int = 0  # every reading received, duplicates included
    duplicates: int = 0
    polls: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (device, ts) -> [count, point mask]
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, new readings) per message
    latest_ts: str = ""  # newest reading timestamp received (RFC 3339 strings sort like times)
    bad: int = 0  # readings with quality != good
    online: list[float] = field(default_factory=list)  # monotonic arrivals of the daemon's "online" status


def make_recorder(port: int) -> Any:
    base = _subscriber_base()

    class Recorder(base):  # type: ignore[misc,valid-type]
        """tests/sync/sink_peers.Subscriber, recording compactly instead of keeping every message."""

        def __init__(self, port: int) -> None:
            self.tally = Tally()
            self.tally_lock = threading.Lock()
            super().__init__(port, topic="edge/#", client_id=f"bench-sub-{free_port()}")

        def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
            now = time.monotonic()
            if msg.topic.endswith("/status"):  # published (retained) by the sink on every connect
                if msg.payload == b"online" and not msg.retain:
                    with self.tally_lock:
                        self.tally.online.append(now)
                return
            readings = json.loads(msg.payload)["readings"]
            with self.tally_lock:
                t = self.tally
                seen, polls = t.seen, t.polls
                new = 0
                latest = t.latest_ts
                for r in readings:
                    s = r["seq"]
                    if s >= len(seen):
                        seen.extend(bytes(max(s + 1 - len(seen), len(seen))))
                    if seen[s]:
                        t.duplicates += 1
                        continue
                    seen[s] = 1
                    new += 1
                    ts = r["ts"]
                    if ts > latest:
                        latest = ts
                    if r["quality"] != "good":
                        t.bad += 1
                    key = (r["device"], ts)
                    entry = polls.get(key)
                    if entry is None:
                        entry = polls[key] = [0, 0]
                    entry[0] += 1
                    entry[1] |= 1 << int(r["point"][1:])
                t.latest_ts = latest
                t.readings += len(readings)
                t.arrivals.append((now, new))

        def arrived_between(self, t0: float, t1: float) -> int:
            with self.tally_lock:
                return sum(n for at, n in self.tally.arrivals if t0 <= at < t1)

        def first_arrival_after(self, t0: float) -> float | None:
            """When the first message with readings not seen before arrived at or after t0."""
            with self.tally_lock:
                return next((at for at, n in self.tally.arrivals if at >= t0 and n), None)

        def online_after(self, t0: float) -> float | None:
            with self.tally_lock:
                return next((at for at in self.tally.online if at >= t0), None)

    return Recorder(port)


# -- the baseline: bare pymodbus ---------------------------------------------------------------------------

async def _baseline(ports: list[int], units: int, devices: int, registers: int, interval: float,
                    seconds: float) -> dict[str, float]:
    """Subprocess mode: a bare pymodbus client loop on the daemon's schedule; prints its CPU and reads."""
    from pymodbus.client import AsyncModbusTcpClient

    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, retries=0) for p in ports]
    for c in clients:
        await c.connect()
    locks = [asyncio.Lock() for _ in ports]  # one request at a time per connection, like a real bus
    measure_from = time.monotonic() + 1.0
    until = measure_from + seconds
    done = {"reads": 0, "errors": 0, "overruns": 0}

    async def device(i: int) -> None:
        c, lock, unit = clients[i // units], locks[i // units], i % units + 1
        tick = time.monotonic()
        while tick < until:
            delay = tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            ok = True
            async with lock:  # one request per 125 registers at most (the protocol's limit), like the planner
                for start in range(0, registers, MAX_READ):
                    count = min(MAX_READ, registers - start)
                    rr = await c.read_holding_registers(start, count=count, device_id=unit)
                    ok = ok and not rr.isError() and len(rr.registers) == count
            if tick >= measure_from:
                done["reads" if ok else "errors"] += 1
            tick += interval
            now = time.monotonic()
            if now > tick:
                missed = int((now - tick) // interval) + 1
                if tick >= measure_from:
                    done["overruns"] += missed
                tick += missed * interval

    async def mark() -> float:
        await asyncio.sleep(measure_from - time.monotonic())
        return time.process_time()

    cpu0, *_ = await asyncio.gather(mark(), *(device(i) for i in range(devices)))
    cpu = time.process_time() - cpu0
    for c in clients:
        c.close()
    return {"cpu": cpu, "seconds": seconds, **done}


def run_baseline(ports: list[int], units: int, devices: int, registers: int, interval: float,
                 seconds: float) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--baseline-child", json.dumps([ports, units, devices, registers, interval,
                                                                     seconds])]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- the daemon ---------------------------------------------------------------------------------------------

def edge_config(folder: Path, ports: list[int], units: int, devices: int, registers: int, interval: float,
                broker_port: int) -> Path:
    points = ", ".join(f'{{name = "r{a}", address = {a}, type = "uint16"}}' for a in range(registers))
    body = []
    for i in range(devices):
        body.append(f'[[device]]\nname = "d{i:02d}"\ndriver = "modbus-tcp"\nhost = "127.0.0.1"\n'
                    f'port = {ports[i // units]}\nunit = {i % units + 1}\ninterval = "{interval * 1000:g}ms"\n'
                    f'point = [{points}]\n')
    body.append(f'[[sink]]\nname = "broker"\ntype = "mqtt"\nurl = "mqtt://127.0.0.1:{broker_port}"\n')
    # The store as a user gets it (commit_interval 100 ms), not the tests' faster 50 ms.
    return write_config(folder, "\n".join(body), edge_id="bench", store='commit_interval = "100ms"')


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


def device_totals(edge: EdgeProcess) -> dict[str, int]:
    devs = edge.get("/v1/devices")["devices"]
    total = {"polls": 0, "overruns": 0, "poll_errors": 0, "readings": 0, "up": 0}
    for d in devs:
        st = d["status"]
        total["polls"] += st["polls"]
        total["overruns"] += st["overruns"]
        total["poll_errors"] += st["poll_errors"]
        total["readings"] += d["readings"]
        total["up"] += st["state"] == "up"
    return total


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def parse_ts(text: str) -> float:
    from edge.reading import parse_ts as parse

    return parse(text)


# -- the run -----------------------------------------------------------------------------------------------

def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=ASKED_DEVICES)
    ap.add_argument("--registers", type=int, default=ASKED_REGISTERS, help="uint16 holding registers per device")
    ap.add_argument("--interval", type=float, default=ASKED_INTERVAL, help="poll interval, seconds")
    ap.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="steady-state window")
    ap.add_argument("--units-per-endpoint", type=int, default=1,
                    help="unit ids per simulated TCP endpoint (1: one endpoint per device, like real sites)")
    ap.add_argument("--baseline-seconds", type=float, default=BASELINE_SECONDS)
    ap.add_argument("--outage", type=float, default=OUTAGE_SECONDS, help="broker outage, seconds (0: skip)")
    ap.add_argument("--profile", metavar="FILE", help="py-spy the daemon during the window into FILE (speedscope; "
                    "needs py-spy, and its sampling skews the CPU figure)")
    ap.add_argument("--dump-polls", metavar="FILE", help="write every (device, ts, readings) received as JSON lines")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, logs)")
    ap.add_argument("--baseline-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_child:
        ports, units, devices, registers, interval, seconds = json.loads(args.baseline_child)
        print(json.dumps(asyncio.run(_baseline(ports, units, devices, registers, interval, seconds))))
        return
    tmp = tempfile.mkdtemp(prefix="edge-bench-gateway-")
    try:
        run(args, Path(tmp))
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


def run(args: argparse.Namespace, tmp: Path) -> None:
    from sink_peers import Broker

    devices, registers, interval = args.devices, args.registers, args.interval
    units = max(1, min(args.units_per_endpoint, devices))
    endpoints = (devices + units - 1) // units
    asked = devices * registers / interval
    print(f"edge end-to-end: {devices} devices × {registers} uint16 registers @ {interval * 1000:g} ms "
          f"= {asked:,.0f} points/s asked; {endpoints} Modbus TCP endpoint(s) × {units} unit id(s); "
          f"{os.cpu_count()} cores; load average {load_average()}", flush=True)
    ports = [free_port() for _ in range(endpoints)]
    sim = start_server(ports, units, registers)
    broker = edge = sub = None
    try:
        # 1. baseline: bare pymodbus against the same simulator, before anything else runs
        base = run_baseline(ports, units, devices, registers, interval, args.baseline_seconds)
        base_points = base["reads"] * registers
        base_per_100k = base["cpu"] / max(base_points, 1) * 100_000
        base_asked = devices * base["seconds"] / interval
        print(f"baseline (bare pymodbus loop, {base['seconds']:g} s): {base['reads'] / base_asked:.3f} of asked "
              f"reads done ({base['overruns']} overruns, {base['errors']} errors), "
              f"{100 * base['cpu'] / base['seconds']:.1f} % of a core, {base_per_100k:.3f} CPU s per 100k points",
              flush=True)

        # 2. broker, subscriber, daemon
        broker = Broker(tmp / "mosquitto", persistence=True).start()
        sub = make_recorder(broker.port)
        config = edge_config(tmp / "edge", ports, units, devices, registers, interval, broker.port)
        edge = EdgeProcess(config).start(timeout=60)
        assert edge.proc is not None
        pid = edge.proc.pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and device_totals(edge)["up"] < devices:
            time.sleep(0.2)
        time.sleep(WARMUP)

        # 3. steady state
        sim_cpu0 = process_cpu(sim.pid)
        broker_cpu0 = process_cpu(broker.proc.pid) if broker.proc else 0.0
        wall0, mono0, cpu0, dev0 = time.time(), time.monotonic(), process_cpu(pid), device_totals(edge)
        rss_max = 0
        spy = None
        if args.profile:
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(pid), "-d",
                                    str(int(args.seconds)), "-r", "200", "-f", "speedscope", "-o", args.profile,
                                    "--nonblocking", *(["--gil"] if os.environ.get("BENCH_PYSPY_GIL") else [])],
                                   stdout=subprocess.DEVNULL)
        end = mono0 + args.seconds
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            rss_max = max(rss_max, proc_status(pid)["VmRSS"])
        status = proc_status(pid)  # before /v1/devices, whose 2,500-point answer briefly takes ~1.5 MB
        wall1, mono1, cpu1, dev1 = time.time(), time.monotonic(), process_cpu(pid), device_totals(edge)
        if spy is not None:
            spy.wait(30)
        sim_cpu = process_cpu(sim.pid) - sim_cpu0
        broker_cpu = (process_cpu(broker.proc.pid) if broker.proc else 0.0) - broker_cpu0
        load_steady = load_average()
        window = mono1 - mono0
        cpu = cpu1 - cpu0
        arrived = sub.arrived_between(mono0, mono1)
        time.sleep(SETTLE)  # the window's last cycles are still on their way

        # 4. broker outage
        outage: dict[str, Any] = {}
        if args.outage > 0:
            dev_o0, mono_o0 = device_totals(edge), time.monotonic()
            broker.stop()
            stopped = time.monotonic()
            time.sleep(args.outage)
            broker.start()
            back = time.monotonic()
            back_wall = time.time()
            first = online = None
            while time.monotonic() < back + CATCH_UP_TIMEOUT:
                first = first or sub.first_arrival_after(back)
                online = online or sub.online_after(back)
                with sub.tally_lock:
                    latest = sub.tally.latest_ts
                if online is not None and latest and parse_ts(latest) >= back_wall:
                    break
                time.sleep(0.02)
            caught_up = time.monotonic()
            outage = {"down": back - stopped, "first": None if first is None else first - back,
                      "online": None if online is None else online - back,
                      "caught_up": caught_up - back, "load": load_average()}
            time.sleep(2.0)
            dev_o1 = device_totals(edge)
            outage["overruns"] = dev_o1["overruns"] - dev_o0["overruns"]
            outage["cycles"] = devices * (time.monotonic() - mono_o0) / interval

        # 5. stop the daemon (it drains), then count
        edge.stop()
        time.sleep(0.5)
        edge_rc = edge.proc.returncode
    finally:
        if sub is not None:
            sub.close()
        if edge is not None:
            edge.stop()
        if broker is not None:
            broker.stop()
        sim.kill()
        sim.wait()

    report(args, sub.tally, {
        "asked": asked, "window": window, "wall0": wall0, "wall1": wall1, "cpu": cpu, "dev0": dev0, "dev1": dev1,
        "status": status, "rss_max": rss_max, "arrived": arrived, "base_per_100k": base_per_100k,
        "sim_cpu": sim_cpu, "broker_cpu": broker_cpu, "load": load_steady, "outage": outage, "edge_rc": edge_rc,
    })


def report(args: argparse.Namespace, t: Tally, f: dict[str, Any]) -> None:
    devices, registers, interval = args.devices, args.registers, args.interval
    asked, window = f["asked"], f["window"]
    wall0, wall1 = f["wall0"], f["wall1"]
    # Readings of one read request share a ts. A device of more than 125 registers makes several reads per
    # poll, a few ms apart, each with its own ts: a poll cycle is a device's run of ts whose points do not
    # overlap, within half an interval. Two polls always overlap (same points), so they never join.
    by_dev: dict[str, list[tuple[float, int, int]]] = {}
    merged = 0  # (device, ts) holding a point twice: readings of two polls under one timestamp
    for (dev, ts_text), (count, mask) in t.polls.items():
        by_dev.setdefault(dev, []).append((parse_ts(ts_text), count, mask))
        merged += count > mask.bit_count()
    all_cycles: list[list[Any]] = []  # [first ts, readings, point mask]
    delivered = 0  # readings whose ts is in the window
    for items in by_dev.values():
        items.sort()
        current: list[Any] | None = None
        for ts, count, mask in items:
            if wall0 <= ts < wall1:
                delivered += count
            if current is not None and ts - current[0] < interval / 2 and not current[2] & mask:
                current[1] += count
                current[2] |= mask
            else:
                current = [ts, count, mask]
                all_cycles.append(current)
    full = (1 << registers) - 1
    partial = sum(1 for c in all_cycles if c[2] != full)
    cycles = sum(1 for c in all_cycles if wall0 <= c[0] < wall1)  # poll cycles of the window at the subscriber
    if args.dump_polls:
        with open(args.dump_polls, "w") as out:
            for (dev, ts), e in sorted(t.polls.items(), key=lambda kv: kv[0][1]):
                out.write(json.dumps([dev, ts, e[0]]) + "\n")
    seqs = [i for i, b in enumerate(t.seen) if b]
    gaps = (seqs[-1] - seqs[0] + 1 - len(seqs)) if seqs else 0
    polls = f["dev1"]["polls"] - f["dev0"]["polls"]
    overruns = f["dev1"]["overruns"] - f["dev0"]["overruns"]
    errors = f["dev1"]["poll_errors"] - f["dev0"]["poll_errors"]
    polls_asked = devices * window / interval
    cpu = f["cpu"]
    per_100k = cpu / max(delivered, 1) * 100_000
    tb = tb_cpu_per_100k(ASKED_DEVICES * ASKED_REGISTERS / ASKED_INTERVAL)  # its cost per point at the bar's load
    rss, hwm = f["status"]["VmRSS"] / 1024, f["status"]["VmHWM"] / 1024
    lines = [
        f"steady state {window:.1f} s, load average {f['load']}:",
        f"  delivered at the subscriber: {delivered / window:,.0f} points/s of {asked:,.0f} asked = "
        f"{delivered / window / asked:.3f} (ThingsBoard: {TB_DELIVERED[0]:.2f}-{TB_DELIVERED[1]:.2f}); "
        f"arriving in the window: {f['arrived'] / window:,.0f}/s",
        f"  poll cycles: {cycles:,} of {polls_asked:,.0f} asked at the subscriber = {cycles / polls_asked:.3f}; "
        f"the daemon counted {polls:,} polls = {polls / polls_asked:.3f}, overruns {overruns} "
        f"(polls + overruns = {(polls + overruns) / polls_asked:.3f} of asked), poll errors {errors}",
        f"  merged polls: {merged}; incomplete polls: {partial}; bad readings {t.bad} "
        f"(each poll cycle must hold exactly one reading of each of the {registers} points)",
        f"  seq at the subscriber (whole run): {len(seqs):,} distinct, {t.duplicates:,} duplicates, {gaps} missing",
        f"  edge CPU: {100 * cpu / window:.1f} % of a core, {per_100k:.3f} s per 100k points = "
        f"{per_100k / f['base_per_100k']:.1f}× bare pymodbus ({f['base_per_100k']:.3f}), "
        f"{per_100k / tb:.3f}× ThingsBoard ({tb:.2f}; bar {BAR_CPU_FRACTION:.1f}×)",
        f"  edge memory: VmRSS {rss:.1f} MB (max sampled each second {f['rss_max'] / 1024:.1f}), VmHWM {hwm:.1f} MB, "
        f"{f['status']['Threads']} threads; {rss / BAR_RSS_MB:.2f}× the {BAR_RSS_MB:.0f} MB bar "
        f"(ThingsBoard {TB_RSS_MB:.0f} MB)",
        f"  others: simulator {100 * f['sim_cpu'] / window:.0f} % of a core, mosquitto "
        f"{100 * f['broker_cpu'] / window:.0f} %",
    ]
    o = f["outage"]
    if o:
        def secs(x: float | None) -> str:
            return "NEVER" if x is None else f"{x:.2f} s"

        lines += [
            f"broker outage {o['down']:.1f} s, load average {o['load']}:",
            f"  reconnected (its \"online\" status at the subscriber) {secs(o['online'])} after the broker "
            f"returned (bar {BAR_RECONNECT_S:g} s, ThingsBoard {TB_RECONNECT_S:g} s); first unseen readings "
            f"{secs(o['first'])}; live again (newest reading younger than the return) {o['caught_up']:.1f} s; "
            f"seq missing over the whole run: {gaps}",
            f"  polling meanwhile: {o['overruns']} overruns in {o['cycles']:,.0f} cycles (outage, drain, 2 s after)",
        ]
    lines.append(f"edge exit code {f['edge_rc']}")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
