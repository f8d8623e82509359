"""The one versioned Arrow schema of delivery-log segments and of the rolled-up Parquet files.

Kept apart from ``herald.delivery_log`` so that a queue shard does not import pyarrow until it
writes a segment.
"""

from __future__ import annotations

import pyarrow as pa

#: Bumped whenever a column is added, removed or changes meaning; stored in every file's metadata.
SCHEMA_VERSION = 1
#: The one schema of log segments and of the rolled-up Parquet. ``shard`` + ``event_id``
#: identify a row: the rollup counts each pair once, whatever was shipped twice.
SCHEMA = pa.schema(
    [
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("event_id", pa.int64(), nullable=False),
        pa.field("tag", pa.string(), nullable=False),
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("provider", pa.string()),
        pa.field("attempt", pa.int32(), nullable=False),
        pa.field("error_code", pa.string()),
        pa.field("requester_service", pa.string()),
        pa.field("priority", pa.int8(), nullable=False),
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
    ],
    metadata={"herald.schema_version": str(SCHEMA_VERSION)},
)
