"""Acceptance, as a user runs it, in separate processes: `ratiowatch broker`, the worker
`ratiowatch run --broker ... --no-sim`, and `ratiowatch source` with an Alpaca-shaped websocket
feed and a FRED-shaped poll, both local servers replaying the vendors' documented shapes. The
shipped small-caps scenario fires, with its curve confirmation computed from the polled DGS10 and
DGS2. Also: the source command's start errors."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path
from urllib.request import urlopen

import orjson
import pytest
from websockets.asyncio.server import serve

from ratiowatch.streams.clients import aio_consumer
from ratiowatch.streams.ticks import parse_ticks
from ratiowatch.streams.topics import TICKS
from source_vendors import VendorHTTP, weekdays

pytestmark = pytest.mark.broker
RW = [str(Path(sys.executable).with_name("ratiowatch"))]
KEY, SECRET = "AKE2ETEST0001", "e2e-secret-value"


async def line_matching(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> re.Match:
    while True:
        raw = await stream.readline()
        if not raw:
            raise AssertionError(f"stream ended before {pattern!r}:\n" + "".join(seen[-60:]))
        seen.append(raw.decode())
        m = re.search(pattern, seen[-1])
        if m:
            return m


async def wait_for_polled(bootstrap: str, symbols: set[str]) -> None:
    """Until the polled series are on the `ticks` topic (read back with a plain consumer)."""
    from aiokafka import TopicPartition

    c = aio_consumer(bootstrap, client_id="test-e2e-readback")
    await c.start()
    try:
        parts = [TopicPartition(TICKS, p) for p in range(8)]
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        seen: set[str] = set()
        while not symbols <= seen:
            for recs in (await c.getmany(timeout_ms=500)).values():
                seen.update(t.symbol for r in recs for t in parse_ticks(r.value)[0])
    finally:
        await c.stop()


# Legs of the small-caps scenario's confirmations: flat, then (factor) over the ten rally sessions.
# Breadth (RSP/SPY), regional banks (KRE/XLF), industrials (XLI/SPY) and credit (HYG) improve;
# biotech (XBI/SPY) does not; DXY is no Alpaca stock and stays unknown. With the polled curve,
# 5 of 7 confirmations are met, past the scenario's `require: 4`.
LEGS = {"SPY": (500.0, 0.0), "RSP": (170.0, 0.003), "KRE": (55.0, 0.004), "XLF": (45.0, 0.0),
        "XLI": (130.0, 0.003), "XBI": (95.0, -0.002), "HYG": (78.0, 0.001), "IWM": (200.0, 0.015)}
SESSIONS = 80
TICKS_SENT = SESSIONS * len(LEGS) + 6   # the trades, and the polled DGS10 and DGS2 closes


def alpaca_days() -> list[bytes]:
    """One Alpaca trade message a session: every leg flat for 70 sessions (the 63-session lookback
    fills and the rules arm), then IWM rallies 15% against SPY in ten sessions."""
    msgs = []
    for i, d in enumerate(weekdays(date(2026, 1, 5), SESSIONS)):
        t = f"{d.isoformat()}T19:30:00.123456789Z"
        msgs.append(orjson.dumps([{"T": "t", "S": sym, "i": i, "x": "V", "p": round(p0 * (1 + step * max(0, i - 69)), 2),
                                   "s": 100, "t": t, "c": ["@"], "z": "B"} for sym, (p0, step) in LEGS.items()]))
    return msgs


@pytest.mark.parametrize("shape", ["one run", "roles"])
async def test_run_no_sim_with_an_alpaca_feed_and_a_fred_poll_fires_small_caps_with_the_polled_curve(tmp_path, shape):
    """``one run``: `ratiowatch run --no-sim --feed alpaca:... --poll fred:...` alone, on its embedded
    broker; ``roles``: `ratiowatch broker`, a `run --no-sim` worker and a `source` process."""
    release = asyncio.Event()
    state = {"auth": 0}

    async def alpaca(ws):
        await ws.send(orjson.dumps([{"T": "success", "msg": "connected"}]))
        auth = orjson.loads(await ws.recv())
        ok = auth == {"action": "auth", "key": KEY, "secret": SECRET}
        state["auth"] += 1
        await ws.send(orjson.dumps([{"T": "success", "msg": "authenticated"}] if ok else
                                   [{"T": "error", "code": 402, "msg": "auth failed"}]))
        sub = orjson.loads(await ws.recv())
        await ws.send(orjson.dumps([{"T": "subscription", "trades": sub["trades"], "quotes": [], "bars": []}]))
        await release.wait()  # the curve's closes come first: they are older than every trade
        for m in alpaca_days():
            await ws.send(m)
        await ws.wait_closed()

    procs: list[asyncio.subprocess.Process] = []
    stage = ["starting"]
    worker_out: list[str] = []

    async def start(*argv: str, env: dict | None = None) -> asyncio.subprocess.Process:
        p = await asyncio.create_subprocess_exec(*RW, *argv, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
                                                 env={**os.environ, **(env or {})})
        procs.append(p)
        return p

    with VendorHTTP() as fred:
        # FRED's DGS10 and DGS2 for the days before the trades: 10y above 2y, the curve un-inverted.
        fred.series["DGS10"] = [("2025-12-29", "4.15"), ("2025-12-30", "."), ("2025-12-31", "4.18"), ("2026-01-02", "4.19")]
        fred.series["DGS2"] = [("2025-12-29", "3.46"), ("2025-12-30", "."), ("2025-12-31", "3.48"), ("2026-01-02", "3.47")]
        async with serve(alpaca, "127.0.0.1", 0) as server:
            feed = f"alpaca:ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v2/iex"
            try:
                async with asyncio.timeout(240):
                    sources = ["--feed", feed, "--poll", "fred:DGS10,DGS2", "--fred-url", fred.url,
                               "--poll-since", "2025-12-01"]
                    keys = {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET}
                    if shape == "one run":
                        worker = source = await start("run", "--no-sim", "--serve", "127.0.0.1:0", *sources, env=keys)
                        bootstrap = (await line_matching(worker.stdout, r"embedded broker at (\S+)", worker_out)).group(1)
                        metrics_url = (await line_matching(worker.stdout, r"status page: (http://127\.0\.0\.1:\d+)/",
                                                           worker_out)).group(1)
                    else:
                        broker = await start("broker", "--partitions", "8")
                        bootstrap = (await line_matching(broker.stdout, r"bootstrap: (\S+)", [])).group(1)
                        worker = await start("run", "--broker", f"kafka://{bootstrap}", "--no-sim")
                        await line_matching(worker.stdout, r"^running", worker_out)
                        source = await start("-v", "source", "--broker", f"kafka://{bootstrap}", "--http", "127.0.0.1:0",
                                             *sources, env=keys)
                        metrics_url = (await line_matching(source.stdout, r"(http://127\.0\.0\.1:\d+)/metrics",
                                                           [])).group(1)
                    stage[0] = "waiting for the polled series on the ticks topic"
                    polled = asyncio.ensure_future(wait_for_polled(bootstrap, {"DGS10", "DGS2"}))
                    ended = asyncio.ensure_future(source.wait())
                    await asyncio.wait([polled, ended], return_when=asyncio.FIRST_COMPLETED)
                    if not polled.done():
                        polled.cancel()
                        raise AssertionError("the source ended: " + (await source.stdout.read()).decode()[-3000:])
                    release.set()
                    stage[0] = "waiting for the alert"
                    await line_matching(worker.stdout, r"ALERT: Small caps outperform large caps", worker_out)
                    await line_matching(worker.stdout, r"IWM/SPY 3-month change is \+1\d\.\d\d%", worker_out)
                    curve = await line_matching(worker.stdout, r"\[(.)\] Curve un-inverted: (.*)", worker_out)
                    # The source's own counter reaches every tick the vendor sent (polled until it does,
                    # within the test's deadline: the last batch may still be on its way).
                    metrics = ""
                    while f"ratiowatch_source_ticks_sent_total {TICKS_SENT}.0" not in metrics:
                        metrics = await asyncio.to_thread(lambda: urlopen(metrics_url + "/metrics", timeout=30).read().decode())
                        await asyncio.sleep(0.2)
                    source.send_signal(signal.SIGTERM)
                    rest = (await source.stdout.read()).decode()
                    assert await source.wait() == 0, rest
            except TimeoutError:
                raise AssertionError(f"timed out {stage[0]}; the worker said:\n" + "".join(worker_out[-40:])) from None
            finally:
                for p in reversed(procs):
                    if p.returncode is None:
                        p.send_signal(signal.SIGTERM)
                        await asyncio.wait_for(p.wait(), 60)
    assert curve.group(1) == "x", "".join(worker_out[-30:])
    assert any(re.search(r"Confirmations: 5 of 7 met", line) for line in worker_out), "".join(worker_out[-30:])
    assert "0.72" in curve.group(2), curve.group(0)           # DGS10 4.19 - DGS2 3.47 of 2026-01-02
    if shape == "one run":  # the run's own count: every tick in, none dead-lettered
        assert re.search(r"stopped: \d+ ticks in, 0 dead-lettered, \d+ events", rest), rest
    else:
        assert re.search(rf"stopped: {TICKS_SENT} ticks in \d+ records, 0 dead-lettered", rest), rest
    assert SECRET not in rest and state["auth"] == 1


@pytest.mark.parametrize("argv, env, needle, code", [
    (["--broker", "kafka://127.0.0.1:1", "--no-sim", "--http", "off"], {}, "cannot reach the broker at 127.0.0.1:1", 1),
    (["--feed", "http://x"], {}, "--feed must be a ws:// or wss:// URL", 2),
    (["--feed", "nonsense"], {}, "--feed must be FORMAT:ws(s)://..., a ws(s):// URL or a vendor name", 2),
    (["--feed", "alpaca:ws://127.0.0.1:9/x"], {"APCA_API_KEY_ID": ""}, "needs APCA_API_KEY_ID and APCA_API_SECRET_KEY", 2),
    (["--feed", "fix:ws://127.0.0.1:9/x"], {}, "--feed format must be one of", 2),
    (["--poll", "fred"], {}, "--poll must be fred:SERIES", 2),
    (["--poll", "fred:NOTUSED"], {}, "no scenario uses NOTUSED", 2),
    (["--fred-url", "ftp://x", "--poll", "fred:DGS10"], {}, "--fred-url must be an http:// or https:// URL", 2),
    (["--poll-since", "yesterday", "--poll", "fred:DGS10"], {}, "--poll-since must be YYYY-MM-DD", 2),
    ([], {"RATIOWATCH_BROKER": ""}, "--broker kafka://HOST:PORT is required", 2),
])
def test_source_start_errors_say_why(argv, env, needle, code):
    full = argv if "--broker" in argv or env.get("RATIOWATCH_BROKER") == "" else ["--broker", "kafka://127.0.0.1:1", *argv]
    out = subprocess.run(RW + ["source", *full], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "APCA_API_KEY_ID": "", "APCA_API_SECRET_KEY": "", **env})
    assert out.returncode == code, out.stderr
    assert needle in out.stderr, out.stderr
