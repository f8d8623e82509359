"""What a rollup run may record: exactly the ids its tasks read and kept (``jobs.manifest``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

from herald.log_schema import SCHEMA
from jobs.manifest import intersect, settle
from jobs.segments import Range, Segment, id_ranges, roll_segments


def segment(first: int, last: int, keep: tuple[Range, ...] | None = None, shard: int = 0) -> Segment:
    key = f"shard-{shard}/{first:014d}-{last:014d}.arrow"
    return Segment(shard, key, key, first, last, 0,
                   ((first, last),) if keep is None else keep)


@pytest.mark.parametrize(("a", "b", "both"), [
    ([(1, 10)], [(5, 20)], [(5, 10)]),
    ([(1, 3), (7, 9)], [(2, 8)], [(2, 3), (7, 8)]),
    ([(1, 3)], [(4, 9)], []),
    ([], [(1, 9)], []),
])
def test_intersect(a: list[Range], b: list[Range], both: list[Range]) -> None:
    assert intersect(a, b) == both == intersect(b, a)


def test_id_ranges_are_the_distinct_ids_within_the_names_range() -> None:
    ids = pa.chunked_array([[5, 1, 2, 3, 3, 9, 10, 40], [11]])
    assert id_ranges(ids, 1, 20) == [(1, 3), (5, 5), (9, 11)]
    assert id_ranges(ids, 30, 35) == []


def test_a_file_holding_less_than_its_name_counts_only_what_it_held() -> None:
    planned = [segment(1, 100)]
    done, counted = settle(planned, {planned[0].key: [(1, 60)]}, {})
    assert done == [planned[0].key] and counted == {0: [(1, 60)]}


def test_ids_left_to_an_unreadable_segment_leave_the_other_undone() -> None:
    # 1-300 was planned to count 151-300; 151-300 kept nothing; 1-300 could not be read.
    first, copy, second = segment(1, 150), segment(1, 300, ((151, 300),)), segment(151, 300, ())
    found = {first.key: [(1, 150)], second.key: [(151, 300)]}
    done, counted = settle([first, copy, second], found, {})
    assert done == [first.key] and counted == {0: [(1, 150)]}


def test_ids_counted_before_make_a_segment_done_without_counting_it_again() -> None:
    again = segment(100, 200, ())
    done, counted = settle([again], {again.key: [(100, 200)]}, {0: [(1, 600)]})
    assert done == [again.key] and counted == {0: []}


def test_a_segment_is_done_per_shard() -> None:
    one, other = segment(1, 10, shard=0), segment(1, 10, (), shard=1)
    done, _ = settle([one, other], {one.key: [(1, 10)], other.key: [(1, 10)]}, {})
    assert done == [one.key]


def _segment_file(path: Path, ids: list[int]) -> None:
    n = len(ids)
    columns = {"shard": [0] * n, "event_id": ids, "tag": ["t"] * n, "tenant": ["acme"] * n,
               "type": ["CM_EMAIL"] * n, "channel": ["email"] * n, "event": ["attempt"] * n,
               "status": ["sent"] * n, "provider": ["smtp"] * n, "attempt": [1] * n,
               "error_code": [None] * n, "requester_service": [None] * n, "priority": [4] * n,
               "at": [1_700_000_000_000_000] * n, "latency_ms": [1.0] * n}
    with pa.ipc.new_file(path, SCHEMA) as writer:
        writer.write_table(pa.Table.from_pydict(columns, schema=SCHEMA))


def test_roll_segments_reports_the_ids_each_file_held(tmp_path: Path) -> None:
    short = tmp_path / "00000000000001-00000000000100.arrow"
    _segment_file(short, [*range(1, 41), *range(61, 71)])
    broken = tmp_path / "00000000000101-00000000000200.arrow"
    broken.write_bytes(b"not arrow")
    planned = [replace(segment(1, 100, ((21, 100),)), path=str(short)),
               replace(segment(101, 200), path=str(broken))]
    staged = roll_segments(planned, str(tmp_path / "staging"), str(tmp_path))
    assert staged.found == {planned[0].key: [(1, 40), (61, 70)]}
    assert staged.unreadable == [planned[1].key]
    assert (staged.rows_read, staged.rows_kept) == (50, 30)
    done, counted = settle(planned, staged.found, {})
    assert done == [] and counted == {0: [(21, 40), (61, 70)]}  # 1-20 were left to no one
