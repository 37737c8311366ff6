"""Where ticks come from is said everywhere a person reads an alert, and simulated or replayed
ticks never reach an engine running for live ones (streams/origin.py)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import orjson
import pytest

from ratiowatch.agents.route import Router
from ratiowatch.agents.shards import ShardMap
from ratiowatch.config import load_config
from ratiowatch.notifiers.render import render
from ratiowatch.notifiers.route import FIRING, Notice
from ratiowatch.streams.origin import HEADER, LIVE, REPLAY, SIMULATED, header, origin_of

CFG = load_config()


def _record(offset: int, headers=()) -> SimpleNamespace:
    tick = {"symbol": "SPY", "price": 500.0, "ts_ms": 1_700_000_000_000 + offset}
    return SimpleNamespace(offset=offset, headers=headers, value=orjson.dumps(tick))


async def _route(engine_origin: str, records: list) -> tuple[list, list, Counter]:
    sent, rejected, counters = [], [], Counter()

    async def send(n, value):
        sent.append(value)

    async def dead_letter(rej, partition, offset):
        rejected.append((rej, partition, offset))

    router = Router(ShardMap(CFG.scenarios, 8), signed=CFG.settings.signed_symbols, lateness_ms=60_000,
                    send_shard=send, dead_letter=dead_letter, positions=dict, now=lambda: 0.0, counters=counters,
                    origin=engine_origin)
    await router.handle([(3, records, len(records))])
    return sent, rejected, counters


async def test_a_live_engine_dead_letters_simulated_and_replayed_records_and_routes_the_rest():
    records = [_record(0), _record(1, header(SIMULATED)), _record(2, header(LIVE)), _record(3, header(REPLAY)),
               _record(4, [(HEADER, b"\xff")])]
    sent, rejected, counters = await _route(LIVE, records)
    assert [(r.reason, p, o) for r, p, o in rejected] == [("origin", 3, 1), ("origin", 3, 3), ("origin", 3, 4)]
    assert "simulated ticks" in rejected[0][0].detail and "--origin simulated" in rejected[0][0].detail
    assert counters["ticks_routed"] == 2 and counters["records_in"] == 5
    assert sent  # the two live records went on to their shards


async def test_records_without_the_header_are_the_engines_own_and_a_batch_of_foreign_ones_routes_nothing():
    sent, rejected, counters = await _route(SIMULATED, [_record(0), _record(1, header(SIMULATED))])
    assert rejected == [] and counters["ticks_routed"] == 2
    sent, rejected, counters = await _route(REPLAY, [_record(0, header(LIVE)), _record(1, header(SIMULATED))])
    assert len(rejected) == 2 and counters["ticks_routed"] == 0 and sent == []


def test_the_header_reads_back_and_refuses_an_unknown_origin():
    assert origin_of(header(REPLAY)) == REPLAY
    assert origin_of([("other", b"x")]) is None and origin_of(None) is None
    with pytest.raises(ValueError, match="origin must be one of live, simulated, replay"):
        header("paper")


def _event(origin: str | None) -> dict:
    sc = CFG.scenario("small-caps-outperform")
    ev = {"schema_version": 1, "event_id": "e" * 32, "scenario": sc.id, "title": sc.title, "rule": "trigger",
          "kind": "fired", "series": "IWM/SPY", "direction": "up", "at": "2022-03-04T21:00:00Z",
          "ts_ms": 1646427600000, "value": 0.1042, "threshold": 0.10, "lookback": 63, "series_value": 0.4,
          "description": "IWM/SPY 63-session change >= +10%", "windows": {}, "confirmations": [],
          "transform": "lookback", "transform_sessions": 63, "require": None}
    if origin is not None:
        ev["origin"] = origin
    return ev


@pytest.mark.parametrize("origin, mark", [(SIMULATED, "[SIMULATED] "), (REPLAY, "[REPLAY of 2022-03-04] "),
                                          (LIVE, ""), (None, "")])
@pytest.mark.parametrize("medium", ["email", "slack", "push", "text", "json"])
def test_every_medium_says_when_an_alert_is_not_live(origin, mark, medium):
    msg = render(medium, [Notice(_event(origin), FIRING, CFG.scenario("small-caps-outperform"))])
    where = msg.title + "\n" + msg.body
    title = "Small caps outperform large caps"
    if mark:
        assert mark + title in where
    else:
        assert "[SIMULATED]" not in where and "[REPLAY" not in where and title in where
