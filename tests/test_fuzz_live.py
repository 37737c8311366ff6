"""Fuzzing what a websocket client of the live hub may send (streams/live.py): any message is
handled without raising; a message that is not a valid subscription changes nothing about the
client and gets an error reply saying why; the rate limit holds whatever the messages are."""

from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratiowatch.streams.live import LiveHub

IDS = ["small-caps", "dxy-100", "curve"]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.sampled_from(IDS + ["nope", "", "*", "SMALL-CAPS"]) | st.text(max_size=10)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
subscriptions = st.one_of(
    st.builds(lambda v: {"subscribe": v}, st.lists(ids, max_size=4) | st.just("*") | scalars | st.lists(scalars, max_size=3)),
    st.builds(lambda v, k, x: {"subscribe": v, k: x}, st.lists(st.sampled_from(IDS), min_size=1), st.text(max_size=5), scalars),
    st.recursive(scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=9), kids, max_size=3),
                 max_leaves=10))
messages = (subscriptions.map(lambda d: json.dumps(d)) | subscriptions.map(lambda d: json.dumps(d).encode())
            | st.text(max_size=100) | st.binary(max_size=100))


def _valid(raw) -> frozenset[str] | None | bool:
    """The subscription a message asks for (None: everything), or False when it is not valid.
    Written from the protocol in the module docstring, not from the code."""
    if not isinstance(raw, str):
        return False
    try:
        msg = json.loads(raw)
    except ValueError:
        return False
    if not isinstance(msg, dict) or list(msg) != ["subscribe"]:
        return False
    want = msg["subscribe"]
    if want == "*":
        return None
    if isinstance(want, list) and want and all(isinstance(s, str) and s in IDS for s in want):
        return frozenset(want)
    return False


def _hub(clock) -> tuple[LiveHub, object]:
    hub = LiveHub(now=clock, scenarios=IDS, client_rate=(5.0, 20), min_interval_ms=0)
    for sid in IDS:
        hub.publish_status({"scenario": sid, "ts_ms": 1})
    c = hub.attach()
    while c.next_message() is not None:  # the initial statuses
        pass
    return hub, c


@FUZZ
@given(st.lists(messages, min_size=1, max_size=10))
def test_any_client_message_is_handled_and_a_bad_one_changes_nothing(msgs):
    t = [0.0]
    hub, c = _hub(lambda: t[0])
    for raw in msgs:
        t[0] += 10.0  # slow enough never to meet the rate limit
        before, bad_before = c.subs, hub.stats["bad_messages"]
        assert hub._on_message(c, raw) is True
        replies = []
        while (m := c.next_message()) is not None:
            replies.append(orjson.loads(m))
        want = _valid(raw)
        if want is False:
            assert c.subs == before
            assert hub.stats["bad_messages"] == bad_before + 1
            assert [r["type"] for r in replies] == ["error"] and replies[0]["error"]
        else:
            assert c.subs == want
            assert replies[0] == {"type": "subscribed", "scenarios": "*" if want is None else sorted(want)}
            # then the current status of each scenario it now follows, and nothing else
            assert sorted(r["scenario"] for r in replies[1:]) == sorted(IDS if want is None else want)
    assert hub.stats["rate_limited"] == 0


@settings(FUZZ, max_examples=80)
@given(st.lists(messages, min_size=25, max_size=140))
def test_the_rate_limit_holds_whatever_is_sent(msgs):
    hub, c = _hub(lambda: 100.0)  # the clock stands still: the bucket never refills
    results = [hub._on_message(c, raw) for raw in msgs]
    handled = hub.stats["bad_messages"] + sum(1 for raw in msgs[:20] if _valid(raw) is not False)
    assert handled == 20  # the burst, and not one message more
    assert hub.stats["rate_limited"] == len(msgs) - 20
    # one notice per burst of excess, and the client is cut off at its 100th message over the limit
    notices = [m for m in iter(c.next_message, None) if "rate limit" in m]
    assert len(notices) == 1
    assert results[:119] == [True] * len(results[:119])
    assert results[119:120] == [False] * len(results[119:120])
