"""One way to open a connection to ``HERALD_DATABASE_URL``: libpq's URL as given, with the
timeouts a failover needs where the URL sets none.

libpq's defaults wait for ever to connect and notice a dead peer only after the kernel's TCP
timeout (minutes): a Herald on a primary that vanished without a reset (a region down, a cut
link) would hang in a call instead of trying the next host of a multi-host URL. Anything the
URL sets itself wins.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

#: libpq parameters used unless the URL gives them.
DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    # Keepalives are not sent while a statement waits to be acknowledged: this bounds that.
    "tcp_user_timeout": 10_000,
    "application_name": "herald",
}


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection to ``url`` (each statement its own transaction unless the
    caller opens one)."""
    given = conninfo_to_dict(url)
    extra = {k: v for k, v in DEFAULTS.items() if k not in given}
    return psycopg.connect(url, autocommit=True, **extra)
