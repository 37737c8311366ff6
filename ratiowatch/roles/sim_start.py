"""Where the simulated market starts, so that it never starts in the past of the state it joins:
after the newest tick on the ``ticks`` topic, else after the warm-start history, else at the
default start (:func:`plan_sim_start`). When the end of ``ticks`` cannot be read it does not
start at all (:class:`SimStartRefused`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ratiowatch.streams.clients import aio_consumer, topic_partitions
from ratiowatch.streams.sim_calendar import CALENDAR_END, next_session_after, session_on_or_after
from ratiowatch.streams.simfeed import DEFAULT_START
from ratiowatch.streams.ticks import parse_ticks
from ratiowatch.streams.topics import TICKS

__all__ = ["SimStart", "SimStartRefused", "plan_sim_start", "newest_on_ticks", "last_history_date"]


class SimStartRefused(RuntimeError):
    """The simulated market cannot tell where the state it would join ends, so it does not start
    (it could start in that state's past). The message says why."""


@dataclass(frozen=True)
class SimStart:
    """Where the simulated market starts: its first session, its start levels, and why."""

    start: date
    levels: dict[str, float]
    why: str

    def describe(self) -> str:
        return f"simulated market starts {self.start.isoformat()}: {self.why}"


async def newest_on_ticks(bootstrap: str, *, sec: Any = None, timeout_s: float = 15.0,
                          scan_back: int = 64) -> tuple[int | None, dict[str, tuple[int, float]]]:
    """The newest event time on the ``ticks`` topic (epoch ms; None when the topic holds no
    record) and, per symbol, its newest (ts_ms, price) in the records read: the last record of
    each partition (one tick or a JSON array batch), or, for a partition whose last record holds
    no valid tick, its last ``scan_back`` records. Raises :class:`SimStartRefused` when that
    cannot be read (no broker within ``timeout_s``, no ``ticks`` topic, a partition without a
    valid tick at its end)."""
    consumer = aio_consumer(bootstrap, client_id="ratiowatch-sim-start", sec=sec, request_timeout_ms=10_000)
    try:
        return await asyncio.wait_for(_read_tails(consumer, scan_back), timeout_s)
    except SimStartRefused:
        raise
    except (asyncio.TimeoutError, TimeoutError):
        raise SimStartRefused(f"could not read the end of `ticks` at {bootstrap} within {timeout_s:g}s") from None
    except Exception as e:  # KafkaConnectionError and other client errors: the broker did not answer
        raise SimStartRefused(f"could not read `ticks` at {bootstrap} ({type(e).__name__}: {e})") from None
    finally:
        try:
            await consumer.stop()
        except Exception:  # never started
            pass


async def _read_tails(consumer: Any, scan_back: int) -> tuple[int | None, dict[str, tuple[int, float]]]:
    from aiokafka import TopicPartition  # aiokafka loads when a broker is read, not with the CLI

    await consumer.start()
    parts = await topic_partitions(consumer, TICKS)
    if not parts:
        raise SimStartRefused("the broker has no `ticks` topic, so where the state it holds ends cannot be "
                              "read; create the topics first (`ratiowatch topics --create`, or start an engine)")
    tps = [TopicPartition(TICKS, p) for p in sorted(parts)]
    consumer.assign(tps)
    begin = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    newest: int | None = None
    last: dict[str, tuple[int, float]] = {}

    async def read(starts: dict[Any, int]) -> set[Any]:
        """Read each partition from its start to its end offset; the partitions with a valid tick."""
        nonlocal newest
        for tp in tps:
            consumer.seek(tp, starts.get(tp, end[tp]))
        found: set[Any] = set()
        todo = dict(starts)
        while todo:
            got = await consumer.getmany(*todo, timeout_ms=200)
            for tp, records in got.items():
                for rec in records:
                    ticks, _ = parse_ticks(rec.value) if rec.value is not None else ([], [])
                    for t in ticks:
                        found.add(tp)
                        newest = t.ts_ms if newest is None else max(newest, t.ts_ms)
                        if t.symbol not in last or t.ts_ms >= last[t.symbol][0]:
                            last[t.symbol] = (t.ts_ms, t.price)
            for tp in list(todo):
                if await consumer.position(tp) >= end[tp]:
                    del todo[tp]
        return found

    with_data = {tp: end[tp] - 1 for tp in tps if end[tp] > begin[tp]}
    found = await read(with_data)
    bare = {tp: max(begin[tp], end[tp] - scan_back) for tp in with_data if tp not in found}
    if bare:
        found |= await read(bare)
        still = sorted(tp.partition for tp in bare if tp not in found)
        if still:
            raise SimStartRefused(
                f"the last records of `ticks` partition(s) {', '.join(map(str, still))} hold no valid tick "
                f"(up to {scan_back} read back from the end), so the newest event time on the topic is unknown")
    return newest, last


async def plan_sim_start(config: Any, *, bootstrap: str | None = None, sec: Any = None, history_dir: Any = None,
                         timeout_s: float = 15.0) -> SimStart:
    """Where the simulated market starts, so that it never starts in the past of the state it
    joins: the session after the newest tick on ``ticks`` at ``bootstrap`` (None: a new embedded
    broker, known empty), from the newest prices there; else the session after ``history_dir``'s
    last date, from its last closes; else the default start, from the documented levels
    (``streams/simfeed.py``). Raises :class:`SimStartRefused` when the newest tick cannot be read."""
    base: date | None = None
    levels: dict[str, float] = {}
    why = ""
    if history_dir is not None:
        last_day, closes = await asyncio.to_thread(last_history_date, history_dir, config)  # polars: off the loop
        if last_day is not None:
            base, levels = last_day, dict(closes)
            why = f"the session after the history's last date ({last_day.isoformat()}), from its last closes"
    if bootstrap is not None:
        newest, last = await newest_on_ticks(bootstrap, sec=sec, timeout_s=timeout_s)
        if newest is not None:
            tz = ZoneInfo(config.settings.session_timezone)
            at = datetime.fromtimestamp(newest / 1000, tz)
            if base is None or at.date() >= base:
                base = at.date()
                levels.update({s: p for s, (_, p) in last.items()})
                why = (f"continuing after {base.isoformat()}, the newest tick on `ticks` ({at:%Y-%m-%d %H:%M %Z}), "
                       f"from its newest prices")
            else:
                why += f" (newer than the newest tick on `ticks`, {at:%Y-%m-%d %H:%M %Z})"
    if base is None:
        start = await asyncio.to_thread(session_on_or_after, DEFAULT_START)
        return SimStart(start, levels, ("`ticks` is empty" if bootstrap else "a new embedded broker") +
                        " and no --history: the default start, from the documented levels (streams/simfeed.py)")
    start = await asyncio.to_thread(next_session_after, base)
    if start is None:
        raise SimStartRefused(f"{base.isoformat()} is past the simulated market's calendar (it ends {CALENDAR_END})")
    return SimStart(start, levels, why)


def last_history_date(history_dir: Any, config: Any) -> tuple[date | None, dict[str, float]]:
    """The last date of ``history_dir`` for the config's symbols (None: no rows) and each symbol's
    last close."""
    from ratiowatch.streams.history import available_symbols, load_history  # polars: only with --history

    syms = config.symbols & available_symbols(history_dir)
    h = load_history(history_dir, syms, config.settings.signed_symbols)
    if not h.height:
        return None, {}
    last = h.group_by("symbol").last()
    return h["date"].max(), dict(zip(last["symbol"].to_list(), last["close"].to_list()))
