"""The status page tells the truth (headless Chromium): simulated data is bannered and marked,
every configured card is there at first paint, the latest crossings come from the events topic
on open, "Last crossing" is the trigger's, times are in the session zone, and a card whose engine
has gone quiet says how old its data is while the badge stops saying "live"."""

from __future__ import annotations

import shutil
import time
from datetime import date

from ratiowatch.agents.engine import ShardEngine
from ratiowatch.config import load_config
from ratiowatch.streams.history import daily_ticks, load_history
from ratiowatch.streams.live import LiveHub

from test_status_page_browser import HISTORY, REPO, TOKEN, chromium_page, require_browser

SCN = "small-caps-outperform"


def _states_and_events(cfg):
    """The engine over real history from 2024 until a small-caps confirmation moves after the
    scenario's latest trigger event in 2026: the states then, the events on the way, and that
    trigger event."""
    eng = ShardEngine(cfg.scenarios, cfg.settings)
    states: dict = {}
    events = []
    trigger = None
    for d, ticks in daily_ticks(load_history(HISTORY, cfg.symbols), start=date(2024, 1, 1)):
        out, _ = eng.apply(states, ticks[0].ts_ms, ticks)
        events += out
        mine = [e for e in out if e["scenario"] == SCN]
        if d >= date(2026, 1, 1) and any(e["rule"] == "trigger" for e in mine):
            trigger = [e for e in mine if e["rule"] == "trigger"][-1]
        elif trigger and any(e["rule"] != "trigger" for e in mine):
            return eng, states, events, trigger
    raise AssertionError("the history should hold a small-caps trigger event in 2026 and a confirmation after it")


async def test_the_page_says_what_the_data_is_and_how_old():
    require_browser()  # before anything starts: a missing browser fails at once
    cfg = load_config()
    eng, states, events, trigger = _states_and_events(cfg)
    ids = [s.id for s in cfg.scenarios]
    shown = [sid for sid in ids if sid in states][:-1]  # the last configured one never reports
    quiet = shown[1]                                     # this one's engine went quiet 10 minutes ago
    hub = LiveHub(scenarios=ids)
    for s in cfg.scenarios:  # as the web role does before it reads scenario-status
        hub.publish_status({"type": "status", "scenario": s.id, "title": s.title, "pending": True})
    now_ms = int(time.time() * 1000)
    for sid in shown:
        hub.publish_status({**eng.engines[sid].status(states[sid]), "origin": "simulated",
                            "tz": "America/New_York", "updated_ms": now_ms - (600_000 if sid == quiet else 0)})
    for ev in events[-30:]:  # the tail of the events topic, read before any page opens
        hub.publish_event({**ev, "origin": "simulated"})
    assert events[-30:][-1]["ts_ms"] > trigger["ts_ms"] and trigger in events[-30:]

    server = await hub.serve(port=0, token=TOKEN)
    port = server.sockets[0].getsockname()[1]
    errors = []
    try:
        async with chromium_page(viewport={"width": 1400, "height": 1000}) as page:
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"http://127.0.0.1:{port}/?token={TOKEN}")
            banner = page.locator("#origin-banner")
            await banner.filter(has_text="SIMULATED MARKET").wait_for(timeout=15000)
            # Every configured scenario has a card; the one with no status says it waits.
            await page.locator(".card").nth(len(ids) - 1).wait_for(timeout=15000)
            assert await page.locator(".card").count() == len(ids)
            waiting = page.locator(f'.card[data-scenario="{ids[-1]}"]')
            assert "Waiting for the engine" in await waiting.locator(".reading").text_content()
            card = page.locator(f'.card[data-scenario="{SCN}"]')
            assert await card.locator(".origin").text_content() == "simulated"
            # "Last crossing" is the trigger's, though a confirmation moved after it.
            last = await card.locator(".last").text_content()
            assert f"Trigger {trigger['kind']}" in last and trigger["at"][:10] in last, last
            # The latest crossings are there on open, from the events topic.
            await page.locator("#events li.event").first.wait_for(timeout=15000)
            assert await page.locator("#events li.event").count() == 12
            assert "[simulated]" in await page.locator("#events li.event").first.text_content()
            # Times in the session zone.
            asof = await card.locator(".asof").text_content()
            assert asof.endswith((" EST", " EDT")), asof
            # The quiet card says how old its data is, and the badge is not "live".
            stale = page.locator(f'.card[data-scenario="{quiet}"] .asof')
            await stale.filter(has_text="no update for 10 min").wait_for(timeout=15000)
            conn = await page.text_content("#conn")
            assert conn.startswith("connected") and "10 min old" in conn, conn
            shot = REPO / "tests" / "artifacts" / "status_page_simulated.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(shot), full_page=True, animations="disabled")
            shutil.copyfile(shot, REPO / "docs" / "status_page_simulated.png")
    finally:
        server.close()
        await server.wait_closed()
        hub.close()
    assert errors == []
