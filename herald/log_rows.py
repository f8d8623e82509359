"""Delivery-log events as Arrow rows of ``herald.log_schema.SCHEMA``, built one column at a time.

What the log shipper appends to a segment and what the database's rollup turns into Parquet:
one function, so both write the same values (``at`` rounded to the microsecond, never cut).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

import numpy as np
import pyarrow as pa

from herald.delivery_log import LogEvent
from herald.log_schema import SCHEMA

#: The schema's columns that come from a LogEvent (``shard`` and ``event_id`` come from storage).
EVENT_FIELDS = [field for field in SCHEMA if field.name not in ("shard", "event_id")]
_VALUES = attrgetter(*(field.name for field in EVENT_FIELDS))


def log_batch(shards: int | Sequence[int], ids: Sequence[int],
              events: Sequence[LogEvent]) -> pa.RecordBatch:
    """The rows of ``events`` with their ``ids``, all of shard ``shards`` or one shard each.

    Columns are built per batch: one transposition, one Arrow array per column.
    """
    count = len(ids)
    shard = (np.full(count, shards, dtype=np.int32) if isinstance(shards, int)
             else np.asarray(shards, dtype=np.int32))
    arrays = [pa.array(shard), pa.array(ids, pa.int64())]
    columns = list(zip(*map(_VALUES, events), strict=True)) or [()] * len(EVENT_FIELDS)
    for field, values in zip(EVENT_FIELDS, columns, strict=True):
        if field.name == "at":  # epoch seconds → microseconds, rounded, not truncated
            micros = np.rint(np.asarray(values, dtype=np.float64) * 1e6).astype(np.int64)
            arrays.append(pa.array(micros, type=field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)
