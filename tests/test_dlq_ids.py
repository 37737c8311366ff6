"""``ticks.dlq`` records carry a stable ``dlq_id``: a worker that reads the same records again
(restarted before its commit) dead-letters them again under the same ids, so a consumer that keeps
one record per id sees each rejection once (streams/ticks.py dlq_record)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from kafka import KafkaProducer

from ratiowatch.config import load_config
from ratiowatch.roles.engine import EngineRole
from ratiowatch.streams.topics import APP_ID, TICKS, TICKS_DLQ
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.readback import read_topic
from ratiowatch.streams.ticks import Rejected, dlq_record


def test_the_id_names_the_rejection_not_the_write():
    rej = Rejected("bad_price", "price must be > 0", {"symbol": "SPY", "price": -1, "ts_ms": 1})
    again = Rejected("bad_price", "a detail worded differently", {"ts_ms": 1, "price": -1, "symbol": "SPY"})

    def dlq_id(r, **kw):
        return orjson.loads(dlq_record(r, source=TICKS, **kw))["dlq_id"]

    read = dict(partition=2, offset=40)
    assert dlq_id(rej, at_ms=1, **read) == dlq_id(again, at_ms=999, **read)  # the same input read again
    assert dlq_id(rej, at_ms=1, **read) != dlq_id(rej, at_ms=1, partition=2, offset=41)
    assert dlq_id(rej, at_ms=1, **read, judged_by="shard 1") != dlq_id(rej, at_ms=1, **read, judged_by="shard 2")
    # Never on a partition (a feed message): never read again, so two arrivals are two rejections.
    assert dlq_id(rej, at_ms=1) != dlq_id(rej, at_ms=2)


@pytest.mark.broker
async def test_records_read_again_are_dead_lettered_again_under_the_same_ids(tmp_path):
    cfg = load_config()
    n = cfg.settings.partitions
    loop = asyncio.get_running_loop()
    with EmbeddedBroker() as broker:
        ensure_topics(broker, n)
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(3, 0))
        bad = [b"not json", orjson.dumps({"symbol": "SPY", "price": -3, "ts_ms": 1_780_000_000_000}),
               orjson.dumps({"symbol": "NOPE", "price": 3, "ts_ms": 1_780_000_000_000}),
               orjson.dumps([{"symbol": "SPY", "price": 500, "ts_ms": 1_780_000_000_000}, {"symbol": "SPY"}])]
        for i, v in enumerate(bad):
            p.send(TICKS, key=b"k%d" % i, value=v)
        p.close()

        async def run_until(records: int, app_id: str) -> None:
            rt = EngineRole(cfg, broker_url=broker.url, datadir=str(tmp_path / app_id), app_id=app_id)
            await rt.start()
            try:
                deadline = time.monotonic() + 60
                while len(await loop.run_in_executor(None, lambda: list(read_topic(broker.bootstrap, TICKS_DLQ)))) < records:
                    assert time.monotonic() < deadline, f"fewer than {records} dead letters after 60 s"
                    await asyncio.sleep(0.2)
            finally:
                await rt.stop()

        await run_until(len(bad), APP_ID)
        # A second group reads ``ticks`` from the start: the same records read again, as by a
        # worker that died before committing.
        ensure_topics(broker, n, "ratiowatch-again")
        await run_until(2 * len(bad), "ratiowatch-again")
        letters = [orjson.loads(v) for _, v, _, _ in read_topic(broker.bootstrap, TICKS_DLQ)]
    assert len(letters) == 2 * len(bad)  # written twice: at least once, as the topic promises
    first, second = letters[:len(bad)], letters[len(bad):]
    assert sorted(d["dlq_id"] for d in first) == sorted(d["dlq_id"] for d in second)
    assert len({d["dlq_id"] for d in first}) == len(bad)
    assert {d["reason"] for d in first} == {"not_json", "bad_price", "unknown_symbol", "missing_field"}
