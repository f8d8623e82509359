"""Where browsers reach a gateway, the frames it writes and reads, and its wire log kept free of
tokens and content."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

import orjson

from herald.config_types import fill_browser_url
from herald.render import Message

__all__ = ["WS_PATH", "EVERY_INTERFACE", "Ack", "advertised_url", "encode_frame", "read_frame",
           "wire_log"]

WS_PATH = "/ws"
#: Hosts that mean "every interface": such a gateway is reached by its node's IP.
EVERY_INTERFACE = frozenset({"", "0.0.0.0", "::"})


def advertised_url(host: str, port: int, node_ip: str | None, public_url: str | None) -> str:
    """The URL browsers connect to, for a gateway bound to ``host:port`` on the node whose IP is
    ``node_ip``: ``public_url`` (``HERALD_BROWSER_PUBLIC_URL``, a proxy in front) with ``{node_ip}``
    and ``{port}`` filled in if given, else ``ws://<host>:<port>/ws``, host being the address it
    binds or, when it binds every interface (``0.0.0.0``, ``::``), the IP of its node."""
    anywhere = host in EVERY_INTERFACE
    # Without its node's IP (a gateway made outside Ray), loopback names this machine.
    node_ip = node_ip or ("127.0.0.1" if anywhere else host)
    if public_url:
        return fill_browser_url(public_url, node_ip, port)
    reached = node_ip if anywhere else host
    if ":" in reached:  # an IPv6 literal
        reached = f"[{reached}]"
    return f"ws://{reached}:{port}{WS_PATH}"


def encode_frame(message: Message) -> bytes:
    """The frame of ``message``: JSON, as UTF-8."""
    fields = {"tag": message.tag, "type": message.type, "title": message.title,
              "content": message.text, "priority": message.priority}
    try:
        return orjson.dumps(fields)
    except orjson.JSONEncodeError:  # a lone surrogate (from a "\ud800" in JSON input): escape it
        return json.dumps(fields).encode()


@dataclass(frozen=True, slots=True)
class Ack:
    """A browser's ``{"ack": tag}``."""

    tag: str


def read_frame(raw: str | bytes) -> Ack | str | None:
    """What a browser's frame asks: an ``Ack``, the pong to answer a ``{"ping": x}`` with, or
    nothing (binary, not JSON, nested deeper than the parser goes, or neither)."""
    if not isinstance(raw, str):
        return None
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(frame, dict):
        return None
    tag = frame.get("ack")
    if isinstance(tag, str):
        return Ack(tag)
    if "ping" in frame:
        return json.dumps({"pong": frame["ping"]})
    return None


class _Redact(logging.Filter):
    """websockets logs request lines and frames at DEBUG: keep tokens and content out of them."""

    _token = re.compile(r"(token=)[^\s&]+")
    _frame = re.compile(r"^([<>] (?:TEXT|BINARY|CONT)) .*?(\[\d+ bytes\])?$", re.DOTALL)

    def filter(self, record: logging.LogRecord) -> bool:
        # websockets puts the connection object in ``extra``: a JSON log formatter (Ray's)
        # cannot write it and would lose the record; its id is what a reader needs.
        connection = record.__dict__.pop("websocket", None)
        if connection is not None:
            record.__dict__["connection"] = str(getattr(connection, "id", ""))
        if record.levelno > logging.DEBUG:
            return True
        text = record.getMessage()
        redacted = self._frame.sub(r"\1 <redacted> \2", self._token.sub(r"\1<redacted>", text))
        if redacted != text:
            record.msg, record.args = redacted.rstrip(), None
        return True


#: The websockets library's own protocol log for the gateway's connections.
wire_log = logging.getLogger("herald.websocket.wire")
wire_log.addFilter(_Redact())
