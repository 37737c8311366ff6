"""The status page in a real headless browser (Debian's chromium driven by playwright): cards render
from the live stream, a value pushed after load appears, data is shown as text, nothing loads from
outside 127.0.0.1. Saves a screenshot to tests/artifacts/status_page.png (and docs/status_page.png)."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from ratiowatch.agents.engine import ShardEngine
from ratiowatch.config import load_config
from ratiowatch.streams.history import daily_ticks, load_history
from ratiowatch.streams.live import LiveHub

REPO = Path(__file__).resolve().parents[1]
HISTORY = REPO.parent / "shared" / "data" / "history"
CHROMIUM = os.environ.get("RATIOWATCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCN = "small-caps-outperform"
TOKEN = "page-token"


def require_browser():
    """CI installs these; a missing one is a failure that says how to install it, not a skip."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: install it with "
                    "`apt-get update && apt-get install -y chromium` (or set RATIOWATCH_CHROMIUM)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `pip install playwright==1.65.2` "
                    "(do not run `playwright install`: the test drives the system chromium)")
    return async_playwright


@contextlib.asynccontextmanager
async def chromium_page(**page_options):
    """A new page (``page_options``: playwright's ``new_page`` arguments) in the system chromium,
    headless; the browser is closed on the way out."""
    async_playwright = require_browser()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield await browser.new_page(**page_options)
        finally:
            await browser.close()


def expected_reading(day: str) -> str:
    """The card's reading for IWM/SPY's 63-session change on ``day``, computed from the CSVs."""
    closes = {}
    for sym in ("IWM", "SPY"):
        with open(HISTORY / f"{sym}.csv", newline="") as f:
            closes[sym] = {r["date"]: float(r["close"]) for r in csv.DictReader(f)}
    dates = sorted(set(closes["IWM"]) & set(closes["SPY"]))
    r = [closes["IWM"][d] / closes["SPY"][d] for d in dates]
    i = dates.index(day)
    m = r[i] / r[i - 63] - 1
    return f"IWM/SPY is {'up' if m >= 0 else 'down'} {abs(m) * 100:.2f}% over 63 sessions; the trigger is +10.00%."


async def test_status_page_renders_cards_and_updates_live():
    require_browser()  # before anything starts: a missing browser fails at once
    cfg = load_config()
    eng = ShardEngine(cfg.scenarios, cfg.settings)
    states: dict = {}
    days = iter(daily_ticks(load_history(HISTORY, cfg.symbols), start=date(2024, 1, 1)))
    for d, ticks in days:
        eng.apply(states, ticks[0].ts_ms, ticks)
        if d >= date(2026, 2, 1):
            break
    hub = LiveHub(scenarios=[s.id for s in cfg.scenarios])
    for sid, st in states.items():
        hub.publish_status(eng.engines[sid].status(st))
    server = await hub.serve(port=0, token=TOKEN)
    port = server.sockets[0].getsockname()[1]
    requests, sockets, errors = [], [], []
    try:
        async with chromium_page(viewport={"width": 1400, "height": 900}) as page:
            page.on("request", lambda r: requests.append(r.url))
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"http://127.0.0.1:{port}/?token={TOKEN}")
            card = page.locator(f'.card[data-scenario="{SCN}"]')
            before = hub.snapshot()[SCN]
            await card.locator(".reading").filter(has_text=expected_reading(before["at"][:10])).wait_for(timeout=15000)
            assert await page.locator(".card").count() == len(states)
            ids = await page.locator(".card").evaluate_all("cards => cards.map(c => c.dataset.scenario)")
            assert ids == [s.id for s in cfg.scenarios if s.id in states]  # the configured order
            assert await page.text_content("#conn") == "live"
            assert (await card.locator(".title").text_content()) == "Small caps outperform large caps"
            assert (await card.locator(".windows th").all_text_contents()) == ["1M", "3M", "6M", "12M"]
            n_conf = len(cfg.scenario(SCN).confirmations)
            assert await card.locator(".conf-list li").count() == n_conf
            assert await card.locator(".spark-line").get_attribute("points")

            # Push what the engine says next, day by day, until the trigger fires.
            crossing = None
            for d, ticks in days:
                events, affected = eng.apply(states, ticks[0].ts_ms, ticks)
                for sid in affected:
                    hub.publish_status(eng.engines[sid].status(states[sid]))
                for e in events:
                    hub.publish_event(e)
                    if e["scenario"] == SCN and e["rule"] == "trigger" and e["kind"] == "fired":
                        crossing = e
                if crossing:
                    break
            assert crossing, "the history after 2026-02-01 should hold an IWM/SPY +10% crossing"
            day = crossing["at"][:10]
            await card.locator(".reading").filter(has_text=expected_reading(day)).wait_for(timeout=15000)
            await card.locator(".badge").filter(has_text="fired").wait_for(timeout=15000)
            assert "Trigger fired" in await card.locator(".last").text_content()
            assert day in await card.locator(".last").text_content()
            line = page.locator("#events li").filter(has_text="Small caps outperform large caps: trigger fired")
            await line.wait_for(timeout=15000)
            shot = REPO / "tests" / "artifacts" / "status_page.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(shot), full_page=True, animations="disabled")
            (REPO / "docs").mkdir(exist_ok=True)
            shutil.copyfile(shot, REPO / "docs" / "status_page.png")

            # A new scenario appears live, and text that looks like markup shows as text.
            hostile = eng.engines["breadth-broadening"].status(states["breadth-broadening"])
            hostile |= {"scenario": "markup-check",
                        "title": '<img src=x onerror="document.title=1">Markup <b>check</b>'}
            hub.publish_status(hostile)
            odd = page.locator('.card[data-scenario="markup-check"] .title')
            await odd.wait_for(timeout=15000)
            assert await odd.text_content() == hostile["title"]
            assert await page.locator(".card img, .card b").count() == 0
    finally:
        server.close()
        await server.wait_closed()
        hub.close()
    assert errors == []  # no script errors and no CSP violations
    assert sockets == [f"ws://127.0.0.1:{port}/ws?token={TOKEN}"]
    assert requests and all(u.startswith(f"http://127.0.0.1:{port}/") or u.startswith("data:") for u in requests), requests
