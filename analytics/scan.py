"""Reading the rolled-up delivery log: one notification per row, one partition at a time.

The Parquet lives under ``events/dt=YYYY-MM-DD/channel=<channel>/`` of the analytics store
(``herald.analytics_store``: ``<data dir>/analytics`` or ``HERALD_ANALYTICS_URI``; ``dt`` is the
UTC day of ``at``). A report reads only the columns it needs and only the ``dt``
partitions of its window (pruned on the path, before any file is opened), one (day, channel)
partition at a time: its rows are de-duplicated on (``shard``, ``event_id``) — a row read twice
has the same ``at`` and channel, so both copies are in the same partition — and folded into one
row per tag. Only those per-tag rows outlive the partition; at the end of a channel the few
tags seen on more than one day (a receipt after midnight) are reduced again (``settle``), and
the rows go to :class:`analytics.metrics.Tally` without their tag. Memory is thus one partition
of rows plus one small row per notification of one channel, which is what "each notification
once, by its last final state" needs.

Which notifications: those *accepted* inside the window (so daily reports add up), each with
whatever else of it happened inside the window; one accepted inside but not final by its end is
``pending``. Events are reduced with pyarrow's ``group_by`` on the tag over numeric aggregates
only (a string ``min`` is several times slower: type and service are taken from each tag's
first row, since every row of a tag carries the same; the channel is the path's).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from herald.analytics_store import AnalyticsStore, partitioning
from herald.data_dir import CHANNEL, DAY
from herald.delivery_log import ACCEPTED, ATTEMPT, FINAL
from herald.log_schema import SCHEMA

#: ``dt`` read as text: ``YYYY-MM-DD`` compares in date order and needs no parsing.
PARTITIONING = partitioning(pa.string())
#: Few distinct values: read as dictionaries (int32 codes), so masks, filters and takes on them
#: move integers, not strings.
DICTIONARY_COLUMNS = ["type", "event", "status", "provider", "error_code", "requester_service"]
_DICTIONARY = pa.dictionary(pa.int32(), pa.string())
DATASET_SCHEMA = pa.schema(
    [pa.field(f.name, _DICTIONARY, f.nullable) if f.name in DICTIONARY_COLUMNS else f
     for f in SCHEMA] + [pa.field(DAY, pa.string())], metadata=SCHEMA.metadata)
FORMAT = ds.ParquetFileFormat(
    read_options=ds.ParquetReadOptions(dictionary_columns=DICTIONARY_COLUMNS))
#: The columns a report reads: not tenant, priority, attempt, nor channel (it is in the path).
COLUMNS = ["shard", "event_id", "tag", "type", "event", "status", "provider", "error_code",
           "requester_service", "at", "latency_ms"]
#: The channel of files outside a ``channel=`` directory (not the rollup's layout).
UNKNOWN = "(unknown)"
_TS = SCHEMA.field("at").type


@dataclass(frozen=True, slots=True)
class Window:
    """The report's days, both ends included; None is open-ended."""

    since: date | None = None
    until: date | None = None

    def partitions(self) -> ds.Expression | None:
        """The ``dt`` filter: which directories to open at all."""
        expression = None
        if self.since is not None:
            expression = ds.field(DAY) >= self.since.isoformat()
        if self.until is not None:
            upper = ds.field(DAY) <= self.until.isoformat()
            expression = upper if expression is None else expression & upper
        return expression

    def rows(self) -> ds.Expression | None:
        """The ``at`` filter: exact at the edges even if a file sits in the wrong directory."""
        expression = None
        if self.since is not None:
            start = datetime.combine(self.since, time(), UTC)
            expression = ds.field("at") >= pa.scalar(start, _TS)
        if self.until is not None:
            end = datetime.combine(self.until + timedelta(days=1), time(), UTC)
            upper = ds.field("at") < pa.scalar(end, _TS)
            expression = upper if expression is None else expression & upper
        return expression


@dataclass(frozen=True, slots=True)
class Partition:
    """The files of one (day, channel) directory."""

    day: str
    channel: str
    fragments: tuple[ds.Fragment, ...]


@dataclass(slots=True)
class PartitionResult:
    """What one partition leaves behind: its rows folded per tag, and event-level counts."""

    state: pa.Table
    rows: int
    duplicates: int
    errors: dict[str, int]
    first_at: datetime | None
    last_at: datetime | None


def plan(store: AnalyticsStore, window: Window) -> tuple[ds.Dataset | None, list[Partition]]:
    """The dataset under ``store``'s ``events/`` and its partitions inside ``window``, by
    channel then day."""
    root = store.events
    files = store.parquet_files(root)
    if not files:
        return None, []
    dataset = ds.dataset(files, schema=DATASET_SCHEMA, format=FORMAT, filesystem=store.filesystem,
                         partitioning=PARTITIONING, partition_base_dir=root)
    groups: dict[tuple[str, str], list[ds.Fragment]] = {}
    for fragment in dataset.get_fragments(filter=window.partitions()):
        keys = ds.get_partition_keys(fragment.partition_expression)
        groups.setdefault((str(keys.get(CHANNEL, UNKNOWN)), str(keys.get(DAY, ""))),
                          []).append(fragment)
    return dataset, [Partition(day, channel, tuple(fragments))
                     for (channel, day), fragments in sorted(groups.items())]


def read_partition(dataset: ds.Dataset, partition: Partition, window: Window) -> PartitionResult:
    """Read one partition's rows in ``window`` and fold them per tag."""
    tables = [fragment.to_table(schema=dataset.schema, columns=COLUMNS, filter=window.rows())
              for fragment in partition.fragments]
    table = pa.concat_tables(tables) if tables else DATASET_SCHEMA.empty_table().select(COLUMNS)
    # One chunk per column (and one dictionary): a file of many small row groups would
    # otherwise make every kernel below loop over thousands of slivers.
    table = table.unify_dictionaries().combine_chunks()
    table, duplicates = _dedup(table)
    errors = _error_counts(table)
    first_at = last_at = None
    if table.num_rows:
        bounds = pc.min_max(table["at"])
        first_at, last_at = bounds["min"].as_py(), bounds["max"].as_py()
    return PartitionResult(reduce_by_tag(_facts(table)), table.num_rows, duplicates, errors,
                           first_at, last_at)


def settle(states: list[pa.Table]) -> Iterator[pa.Table]:
    """One row per tag, in pieces, from the per-partition states of one channel.

    A tag is *at home* in the partition of its ``accepted`` row; elsewhere (a receipt after
    midnight) it is a *stray*. Strays are few, so only they and the rows at home with the same
    tags are reduced again: no group-by over the whole channel, and each home piece is handed
    on as it is.
    """
    home = [state.filter(pc.is_valid(state["accepted_at"])) for state in states]
    strays = pa.concat_tables([state.filter(pc.is_null(state["accepted_at"])) for state in states])
    if strays.num_rows == 0:
        yield from home
        return
    wanted = pc.unique(strays["tag"])
    involved = [strays]
    for piece in home:
        hit = pc.is_in(piece["tag"], value_set=wanted)
        yield piece.filter(pc.invert(hit))
        involved.append(piece.filter(hit))
    yield reduce_by_tag(pa.concat_tables(involved))


def notifications(state: pa.Table, channel: str) -> pd.DataFrame:
    """The notifications of ``channel`` accepted in the window, one row each, without their tag;
    names are categoricals (the metrics group by them)."""
    accepted = state.filter(pc.is_valid(state["accepted_at"])).drop_columns(["tag"])
    frame = accepted.unify_dictionaries().to_pandas()
    frame.insert(0, "channel", pd.Categorical.from_codes(np.zeros(len(frame), np.int8), [channel]))
    return frame


def _dedup(table: pa.Table) -> tuple[pa.Table, int]:
    """Keep the first copy of each (shard, event_id)."""
    if table.num_rows == 0:
        return table, 0
    shard = table["shard"].to_numpy().astype(np.int64)
    event_id = table["event_id"].to_numpy().astype(np.int64)
    if shard.min() >= 0 and shard.max() < 1 << 23 and event_id.min() >= 0 and event_id.max() < 1 << 40:
        repeated = pd.Series((shard << 40) | event_id).duplicated().to_numpy()
    else:
        repeated = pd.DataFrame({"shard": shard, "event_id": event_id}).duplicated().to_numpy()
    count = int(repeated.sum())
    return (table.filter(pa.array(~repeated)), count) if count else (table, 0)


def _error_counts(table: pa.Table) -> dict[str, int]:
    """Error codes of the attempts in this partition (each failed or retried attempt once)."""
    attempts = table.filter(pc.and_(_is(table["event"], ATTEMPT), pc.is_valid(table["error_code"])))
    counted = pc.value_counts(attempts["error_code"])
    return dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(),
                    strict=True))


def _codes(column: pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """A one-chunk dictionary column's (indices, dictionary)."""
    array = column.chunk(0) if column.num_chunks else pa.array([], column.type)
    return array.indices, array.dictionary


def _is(column: pa.ChunkedArray, value: str) -> pa.Array:
    """``column == value`` on the dictionary codes (no string is compared row by row)."""
    indices, dictionary = _codes(column)
    position = dictionary.index(value).as_py()
    if position < 0:
        return pa.array(np.zeros(len(indices), dtype=bool))
    return pc.fill_null(pc.equal(indices, pa.scalar(position, indices.type)), False)


def _only(mask: pa.Array, column: pa.ChunkedArray) -> pa.Array:
    """``column`` where ``mask``, null elsewhere (on the codes, for a dictionary column)."""
    if pa.types.is_dictionary(column.type):
        indices, dictionary = _codes(column)
        kept = pc.if_else(mask, indices, pa.scalar(None, indices.type))
        return pa.DictionaryArray.from_arrays(kept, dictionary)
    return pc.if_else(mask, column, pa.scalar(None, column.type))


def _facts(table: pa.Table) -> pa.Table:
    """The rows that say something about a notification as a whole, in the state's columns.

    ``accepted`` gives the window membership; ``final`` rows compete to be the last one; an
    ``attempt`` with status ``retry`` counts one retry; other attempts only count errors.
    """
    event, status = table["event"], table["status"]
    accepted, final = _is(event, ACCEPTED), _is(event, FINAL)
    retry = pc.and_(_is(event, ATTEMPT), _is(status, "retry"))
    keep = pc.or_(pc.or_(accepted, final), retry)
    table, accepted, final, retry = (table.filter(keep).combine_chunks(), accepted.filter(keep),
                                     final.filter(keep), retry.filter(keep))
    status, latency = table["status"], table["latency_ms"]
    return pa.table({
        "tag": table["tag"],
        "type": table["type"],
        "service": table["requester_service"],
        "accepted_at": _only(accepted, table["at"]),
        "retries": pc.cast(retry, pa.int64()),
        "final_at": _only(final, table["at"]),
        "final_event_id": _only(final, table["event_id"]),
        "final_status": _only(final, status),
        "final_provider": _only(final, table["provider"]),
        "final_code": _only(final, table["error_code"]),
        "sent_ms": _only(pc.and_(final, _is(status, "sent")), latency),
        "delivered_ms": _only(pc.and_(final, _is(status, "delivered")), latency),
    })


def reduce_by_tag(facts: pa.Table) -> pa.Table:
    """One row per tag: earliest acceptance, retries summed, the last final by (at, event id),
    the first ``sent`` and ``delivered`` latencies. Facts and result share their columns, so
    states of several partitions reduce again the same way."""
    rows = facts.num_rows
    is_final = pc.is_valid(facts["final_at"]).to_numpy(zero_copy_only=False)
    finals = np.flatnonzero(is_final)
    final_at = pc.cast(facts["final_at"].take(finals), pa.int64()).to_numpy()
    final_id = facts["final_event_id"].take(finals).to_numpy()
    by_time = finals[np.lexsort((final_id, final_at))]  # row numbers, oldest final first
    rank = np.full(rows, -1, dtype=np.int64)
    rank[by_time] = np.arange(len(by_time))
    work = pa.table({
        "tag": facts["tag"],
        "row": pa.array(np.arange(rows, dtype=np.int64)),
        "accepted_at": facts["accepted_at"],
        "retries": facts["retries"],
        "rank": pa.array(rank, mask=rank < 0),
        "sent_ms": facts["sent_ms"],
        "delivered_ms": facts["delivered_ms"],
    })
    # One thread: on two busy cores it is faster than two, and holds one hash table, not two.
    grouped = work.group_by("tag", use_threads=False).aggregate([
        ("row", "min"), ("accepted_at", "min"), ("retries", "sum"), ("rank", "max"),
        ("sent_ms", "min"), ("delivered_ms", "min"),
    ])
    first = grouped["row_min"]
    last = pa.array(by_time).take(grouped["rank_max"])  # null where a tag has no final
    return pa.table({
        "tag": grouped["tag"],
        "type": facts["type"].take(first),
        "service": facts["service"].take(first),
        "accepted_at": grouped["accepted_at_min"],
        "retries": grouped["retries_sum"],
        "final_at": facts["final_at"].take(last),
        "final_event_id": facts["final_event_id"].take(last),
        "final_status": facts["final_status"].take(last),
        "final_provider": facts["final_provider"].take(last),
        "final_code": facts["final_code"].take(last),
        "sent_ms": grouped["sent_ms_min"],
        "delivered_ms": grouped["delivered_ms_min"],
    })


def by_channel(partitions: list[Partition]) -> Iterator[tuple[str, list[Partition]]]:
    """The partitions of each channel together (``plan`` sorts them so)."""
    channel: str | None = None
    group: list[Partition] = []
    for partition in partitions:
        if partition.channel != channel and group:
            yield str(channel), group
            group = []
        channel = partition.channel
        group.append(partition)
    if group:
        yield str(channel), group
