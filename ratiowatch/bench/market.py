"""The benchmark's market: a scenario set, its warm-start history and a tick stream. Pure, seeded.

- Scenarios: the shipped ones plus generated ones over a universe of ``S0001``... symbols: ratio
  rules on 5- and 21-session changes and on levels, a quarter with a confirmation. The first
  generated scenarios pair the symbols two by two so that every symbol is used; the rest draw
  random pairs. Generated scenarios keep ``windows: [5, 21]``: their state then fits the embedded
  broker's 5 MB per changelog partition even at 10,000 scenarios (it cannot compact).
- History: daily closes before the first live session, run through the pure engine to
  warm-start every scenario (as ``run --history`` does), so lookback rules are live from the
  first tick. The shipped symbols get a year of it (their windows reach 252 sessions).
- Live stream: sessions (trading days) of ``ticks_per_session`` ticks from 09:30 New York; the
  clock advances one millisecond every ``ticks_per_ms`` ticks (a busy desk feed: most ticks do not
  share a timestamp with their scenario's other leg); which symbol ticks is drawn with skewed
  activity, as in a real market; prices are random walks. The stream covers the symbols the
  scenarios use (a feed subscription), so no tick is rejected as unknown.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from ratiowatch.agents.engine import ScenarioState, ShardEngine
from ratiowatch.model.sessions import session_close_ts_ms
from ratiowatch.config import load_config, parse_config
from ratiowatch.model import Config
from ratiowatch.streams.ticks import Tick

__all__ = ["BenchMarket", "Record", "batch_records", "symbol_batch_records", "single_records", "source_single_records"]

FIRST_LIVE_DAY = date(2026, 3, 2)   # a Monday
LONG_HISTORY = 260                  # sessions of history for the shipped symbols (windows up to 252)
SHORT_HISTORY = 30                  # for generated symbols (windows and lookbacks up to 21)
DAILY_VOL = 0.015


def _trading_days_before(d: date, n: int) -> list[date]:
    out: list[date] = []
    while len(out) < n:
        d -= timedelta(days=1)
        if d.weekday() < 5:
            out.append(d)
    return out[::-1]


def _trading_day(k: int) -> date:
    d = FIRST_LIVE_DAY
    for _ in range(k):
        d += timedelta(days=1)
        while d.weekday() >= 5:
            d += timedelta(days=1)
    return d


class Record(tuple):
    """One ``ticks`` record: (partition, key, value, ticks in it, session index)."""

    __slots__ = ()


class BenchMarket:
    """``scenarios`` in total (the shipped ones first; None: one generated pair per two symbols)
    over a universe of ``symbols`` generated names."""

    def __init__(self, scenarios: int | None, symbols: int, *, seed: int = 7, ticks_per_session: int = 500_000,
                 ticks_per_ms: int = 25, windows: tuple[int, ...] = (5, 21), grace_ms: float | None = None) -> None:
        """``windows``: the generated scenarios' windows; with a window past 21 sessions every
        symbol gets the shipped symbols' year of history, so those windows start full.
        ``grace_ms``: the engine's ``settings.grace_ms`` (None: the shipped file's)."""
        self.seed = seed
        self.windows = tuple(windows)
        self.grace_ms = grace_ms
        self.n_scenarios, self.n_symbols = scenarios, symbols
        self.ticks_per_session = ticks_per_session
        self.ticks_per_ms = ticks_per_ms
        rng = random.Random(seed)
        shipped = load_config()
        if scenarios is None:
            scenarios = len(shipped.scenarios) + symbols // 2
        self.tz = shipped.settings.session_timezone
        universe = [f"S{i:04d}" for i in range(1, symbols + 1)]
        n_gen = max(0, scenarios - len(shipped.scenarios))
        pairs = [(universe[2 * k], universe[2 * k + 1]) for k in range(min(n_gen, len(universe) // 2))]
        while len(pairs) < n_gen:
            a, b = rng.sample(universe, 2)
            pairs.append((a, b))
        used = sorted({s for p in pairs for s in p})
        long_syms = sorted(shipped.symbols)
        self.symbols: list[str] = long_syms + used
        # Daily closes: random walks; the last one is where the live stream starts.
        days = _trading_days_before(FIRST_LIVE_DAY, LONG_HISTORY)
        self.history: dict[str, list[tuple[date, float]]] = {}
        for sym in self.symbols:
            n = LONG_HISTORY if sym in shipped.symbols or max(self.windows) > 21 else SHORT_HISTORY
            level = math.exp(rng.uniform(math.log(20.0), math.log(500.0)))
            closes = []
            for d in days[-n:]:
                level *= math.exp(rng.gauss(0.0, DAILY_VOL))
                closes.append((d, round(level, 4)))
            self.history[sym] = closes
        last = {s: c[-1][1] for s, c in self.history.items()}
        self.config: Config = self._config(shipped, pairs, last, rng)
        # The feed subscribes to what the scenarios use (a level rule uses one leg of its pair).
        self.symbols = [s for s in self.symbols if s in self.config.symbols]
        self._last = last

    def _config(self, shipped: Config, pairs: list[tuple[str, str]], last: dict[str, float],
                rng: random.Random) -> Config:
        with open(shipped.path, "rb") as f:
            import yaml

            raw = yaml.safe_load(f)
        for k, (a, b) in enumerate(pairs):
            kind = rng.random()
            up = rng.random() < 0.5
            if kind < 0.5:
                rule = {"series": f"{a}/{b}", "lookback": 5, ("above" if up else "below"): 0.04 if up else -0.04,
                        "rearm": 0.02 if up else -0.02}
            elif kind < 0.7:
                ratio = last[a] / last[b]  # a level close to today's ratio: it crosses intraday
                x = ratio * (1.0 + (0.004 if up else -0.004))
                rule = {"series": f"{a}/{b}", ("above" if up else "below"): x,
                        "rearm": ratio * (1.0 + (0.002 if up else -0.002))}
            elif kind < 0.85:
                rule = {"series": f"{a}/{b}", "lookback": 21, ("above" if up else "below"): 0.08 if up else -0.08,
                        "rearm": 0.05 if up else -0.05}
            else:
                rule = {"series": a, "lookback": 1, ("above" if up else "below"): 0.02 if up else -0.02,
                        "rearm": 0.0}
            sc: dict[str, Any] = {"id": f"gen-{k:05d}", "title": f"{a} vs {b}", "trigger": rule,
                                  "windows": list(self.windows)}
            if rng.random() < 0.25:
                sc["confirmations"] = [{"label": f"{b} firm", "series": b, "lookback": 5, "above": 0.0}]
            raw["scenarios"].append(sc)
        if self.grace_ms is not None:
            raw.setdefault("settings", {})["grace_ms"] = self.grace_ms
        return parse_config(raw, f"<bench: {len(raw['scenarios'])} scenarios>")

    def spec(self) -> dict[str, Any]:
        """The arguments that rebuild this market in another process."""
        return {"scenarios": self.n_scenarios, "symbols": self.n_symbols, "seed": self.seed,
                "ticks_per_session": self.ticks_per_session, "ticks_per_ms": self.ticks_per_ms,
                "windows": list(self.windows), "grace_ms": self.grace_ms}

    def partners(self) -> dict[str, str]:
        """For the baseline's ratio per tick: each symbol's other leg in the first ratio using it."""
        out: dict[str, str] = {}
        for sc in self.config.scenarios:
            legs = sc.trigger.series.legs
            if len(legs) == 2:
                out.setdefault(legs[0], legs[1])
                out.setdefault(legs[1], legs[0])
        return out

    def uses_per_tick(self, ticks: list[tuple[str, float, int, int]]) -> float:
        """Scenarios using a tick's symbol, averaged over ``ticks``: what a tick costs the engine."""
        uses: dict[str, int] = {}
        for sc in self.config.scenarios:
            for sym in sc.symbols:
                uses[sym] = uses.get(sym, 0) + 1
        return round(sum(uses.get(t[0], 0) for t in ticks) / max(1, len(ticks)), 2)

    # --- warm start -----------------------------------------------------------------------------

    def seed_states(self) -> dict[str, ScenarioState]:
        """Every scenario's state after the history, computed by the pure engine (events dropped)."""
        by_day: dict[date, list[Tick]] = {}
        for sym in self.symbols:
            for d, c in self.history[sym]:
                by_day.setdefault(d, []).append(Tick(sym, c, session_close_ts_ms(d, self.tz)))
        engine = ShardEngine(self.config.scenarios, self.config.settings)
        states: dict[str, ScenarioState] = {}
        for d in sorted(by_day):
            ticks = by_day[d]
            engine.apply(states, ticks[0].ts_ms, ticks)
        return states

    # --- live ticks -----------------------------------------------------------------------------

    def ticks(self, n: int) -> list[tuple[str, float, int, int]]:
        """The first ``n`` live ticks as (symbol, price, ts_ms, session index)."""
        rng = random.Random(self.seed + 1)
        syms = self.symbols
        # Skewed activity: a few names tick far more than the rest (rank^-0.8).
        order = syms[:]
        rng.shuffle(order)
        cum = list(accumulate(1.0 / (r + 1) ** 0.8 for r in range(len(order))))
        level = dict(self._last)
        # Per-tick volatility: a session's moves add up to about DAILY_VOL per symbol on average.
        per_sym = max(1.0, self.ticks_per_session / len(syms))
        vol = DAILY_VOL / math.sqrt(per_sym)
        tz = ZoneInfo(self.tz)
        out: list[tuple[str, float, int, int]] = []
        session = -1
        open_ms = 0
        drawn = rng.choices(order, cum_weights=cum, k=n)
        for i, sym in enumerate(drawn):
            s, j = divmod(i, self.ticks_per_session)
            if s != session:
                session = s
                d = _trading_day(s)
                open_ms = int(datetime(d.year, d.month, d.day, 9, 30, tzinfo=tz).timestamp() * 1000)
            p = level[sym] * math.exp(rng.gauss(0.0, vol))
            level[sym] = p
            out.append((sym, round(p, 4), open_ms + j // self.ticks_per_ms, s))
        return out


def _kept(raw: bytes) -> bytes:
    """A right-sized copy: orjson's output keeps its ~4 KB working buffer allocated, which adds
    up to gigabytes over a million kept records."""
    return memoryview(raw).tobytes()


def _partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed record (murmur2, as the Java client,
    aiokafka and kafka-python compute it): a producer keying by symbol spreads the symbols so."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _chunks(ticks: list[tuple[str, float, int, int]], batch: int) -> list[tuple[int, int]]:
    """[start, end) of each vendor message: ``batch`` consecutive ticks, never across a session."""
    out: list[tuple[int, int]] = []
    i, n = 0, len(ticks)
    while i < n:
        s = ticks[i][3]
        j = i
        while j < n and j - i < batch and ticks[j][3] == s:
            j += 1
        out.append((i, j))
        i = j
    return out


def _array(ticks: list[tuple[str, float, int, int]]) -> bytes:
    return _kept(orjson.dumps([{"symbol": t[0], "price": t[1], "ts_ms": t[2]} for t in ticks]))


def _one(t: tuple[str, float, int, int]) -> bytes:
    return _kept(orjson.dumps({"symbol": t[0], "price": t[1], "ts_ms": t[2]}))


def batch_records(ticks: list[tuple[str, float, int, int]], batch: int, partitions: int) -> list[Record]:
    """Vendor batches of ``batch`` ticks (a JSON array per record, as ``encode_ticks`` writes it),
    keyed by source: the sources ``vendor-0``... take turns, one partition each (round-robin); a
    batch never spans two sessions."""
    out: list[Record] = []
    for k, (i, j) in enumerate(_chunks(ticks, batch)):
        p = k % partitions
        out.append(Record((p, b"vendor-%d" % p, _array(ticks[i:j]), j - i, ticks[i][3])))
    return out


def symbol_batch_records(ticks: list[tuple[str, float, int, int]], batch: int, partitions: int) -> list[Record]:
    """The same vendor messages as :func:`batch_records`, each cut into one record per symbol (a
    JSON array of that symbol's ticks, in order), keyed by the symbol: the default partitioner
    spreads the symbols over the partitions. The records of one message go out together, in the
    order of each symbol's first tick in it."""
    part: dict[str, int] = {}
    out: list[Record] = []
    for i, j in _chunks(ticks, batch):
        by_sym: dict[str, list[tuple[str, float, int, int]]] = {}
        for t in ticks[i:j]:
            by_sym.setdefault(t[0], []).append(t)
        for sym, rows in by_sym.items():
            p = part.get(sym)
            if p is None:
                p = part[sym] = _partition_of(sym, partitions)
            out.append(Record((p, sym.encode(), _array(rows), len(rows), rows[0][3])))
    return out


def single_records(ticks: list[tuple[str, float, int, int]], partitions: int) -> list[Record]:
    """One tick per record, keyed by symbol (the default partitioner's partition for the symbol)."""
    part = {}
    out: list[Record] = []
    for t in ticks:
        sym = t[0]
        p = part.get(sym)
        if p is None:
            p = part[sym] = _partition_of(sym, partitions)
        out.append(Record((p, sym.encode(), _one(t), 1, t[3])))
    return out


def source_single_records(ticks: list[tuple[str, float, int, int]], batch: int,
                          partitions: int) -> list[Record]:
    """One tick per record, keyed by source: the ticks of :func:`batch_records`'s vendor message
    ``k`` each in a record of their own, keyed ``vendor-<k mod partitions>`` on that partition.
    The partitions hold what they hold with batches, one record a tick."""
    out: list[Record] = []
    for k, (i, j) in enumerate(_chunks(ticks, batch)):
        p = k % partitions
        key = b"vendor-%d" % p
        out.extend(Record((p, key, _one(t), 1, t[3])) for t in ticks[i:j])
    return out
