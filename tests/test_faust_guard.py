"""The consumer overrides private faust methods: on a faust version they were not read from, the
engine refuses to start and says what to do, rather than corrupting offsets silently."""

from __future__ import annotations

import pytest

from ratiowatch.streams.app import create_app
from ratiowatch.streams import faust_consumer


def test_an_untested_faust_version_fails_at_start_with_what_to_do(monkeypatch, tmp_path):
    real = faust_consumer.version
    monkeypatch.setattr(faust_consumer, "version", lambda dist: "0.16.0" if dist == "faust-streaming" else real(dist))
    with pytest.raises(RuntimeError) as e:
        create_app("kafka://127.0.0.1:9", partitions=1, datadir=tmp_path)  # every role's app is made here
    msg = str(e.value)
    assert msg.startswith("ratiowatch needs faust-streaming 0.15.3, found 0.16.0")
    assert f"{len(faust_consumer.OVERRIDDEN)} listed in ratiowatch.streams.faust_consumer.OVERRIDDEN" in msg
    assert "add it to TESTED_FAUST" in msg


def test_the_installed_versions_are_the_tested_ones():
    faust_consumer.check_faust_version()
