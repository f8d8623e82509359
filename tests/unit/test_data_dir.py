"""The data dir's layout: the names existing data dirs hold, spelled out so a change is deliberate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from herald import data_dir
from herald.data_dir import (
    DataDir,
    is_part_path,
    open_segment_name,
    outbox_file,
    outbox_files,
    parse_segment_name,
    part_name,
    segment_name,
)


def test_paths_are_the_ones_data_dirs_already_hold(tmp_path: Path) -> None:
    layout = DataDir(tmp_path)
    assert layout.shard_db(3) == tmp_path / "queue" / "shard-3.db"
    assert layout.log_dir(2) == tmp_path / "log" / "shard-2"
    assert layout.segment("shard-2/x.arrow") == tmp_path / "log" / "shard-2" / "x.arrow"
    assert layout.analytics == tmp_path / "analytics"
    assert layout.outbox == tmp_path / "outbox"
    assert layout.ray_record == tmp_path / "ray-address.json"
    assert outbox_file(layout.outbox, "EMAIL") == tmp_path / "outbox" / "email.jsonl"
    assert layout.stored(data_dir.LAYOUT) == tmp_path / "queue" / "layout.json"
    names = (data_dir.DEV_API_KEY, data_dir.ADMIN_KEY, data_dir.BROWSER_SECRET,
             data_dir.UNSUBSCRIBE_SECRET, data_dir.WEBHOOK_SECRETS)
    assert names == ("dev-api-key", "admin-key", "browser-secret", "unsubscribe-secret",
                     "webhook-secrets.json")
    assert (data_dir.EVENTS, data_dir.STAGING, data_dir.MANIFEST, data_dir.ROLLUP_LOCK_FILE) == (
        "events", ".staging", "rollup-manifest.json", ".rollup.lock")


def test_segment_names_sort_by_id_and_parse_back() -> None:
    assert segment_name(1, 250) == "00000000000001-00000000000250.arrow"
    assert open_segment_name(251) == "00000000000251.arrow.open"
    assert parse_segment_name(segment_name(7, 99_999_999_999_999)) == (7, 99_999_999_999_999)
    names = [segment_name(first, first + 9) for first in (1, 101, 11, 1001)]
    assert sorted(names) == [segment_name(f, f + 9) for f in (1, 11, 101, 1001)]


@pytest.mark.parametrize("name", ["00000000000001.arrow.open", "1-2.arrow", "x.arrow",
                                  "00000000000001-00000000000002.arrow.tmp",
                                  "00000000000001-00000000000002.parquet"])
def test_other_names_are_not_closed_segments(name: str) -> None:
    assert parse_segment_name(name) is None


def test_closed_segments_and_shard_databases_are_found_on_disk(tmp_path: Path) -> None:
    layout = DataDir(tmp_path)
    for shard, first, last in [(0, 1, 10), (0, 11, 20), (3, 5, 6)]:
        layout.log_dir(shard).mkdir(parents=True, exist_ok=True)
        (layout.log_dir(shard) / segment_name(first, last)).write_bytes(b"")
    (layout.log_dir(0) / open_segment_name(21)).write_bytes(b"")  # being written: not closed
    (layout.log / "elsewhere").mkdir()
    found = sorted((s.shard, s.first, s.last, s.key) for s in layout.closed_segments())
    assert found == [(0, 1, 10, "shard-0/" + segment_name(1, 10)),
                     (0, 11, 20, "shard-0/" + segment_name(11, 20)),
                     (3, 5, 6, "shard-3/" + segment_name(5, 6))]
    assert [s.last for s in layout.closed_segments(3)] == [6]
    assert list(layout.closed_segments(9)) == []
    layout.queue.mkdir()
    for name in ("shard-0.db", "shard-2.db", "shard-2.db-wal", "other.db"):
        (layout.queue / name).write_bytes(b"")
    assert layout.shard_dbs() == [0, 2]


def test_parquet_partitions_and_parts() -> None:
    assert (data_dir.DAY, data_dir.CHANNEL) == ("dt", "channel")  # dt=YYYY-MM-DD/channel=<channel>
    assert re.fullmatch(r"part-[0-9a-f]{32}\.parquet", part_name())
    assert part_name() != part_name()
    assert is_part_path(["dt=2026-01-02", "channel=sms", part_name()])
    assert not is_part_path(["dt=2026-01-02", "channel=sms", "notes.txt"])
    assert not is_part_path(["channel=sms", "dt=2026-01-02", part_name()])


def test_outbox_files_are_the_channels(tmp_path: Path) -> None:
    assert outbox_files(tmp_path / "missing") == []
    for channel in ("sms", "email"):
        outbox_file(tmp_path, channel).write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert outbox_files(tmp_path) == [tmp_path / "email.jsonl", tmp_path / "sms.jsonl"]
