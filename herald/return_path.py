"""VERP return paths: the envelope sender ``bounce+{tag}@{domain}`` that brings a bounce back to
its notification.

A bounce or complaint is mailed to the envelope sender (MAIL FROM), so the tag in it names the
notification without trusting anything in the returned message. ``tag_from_address`` reads only
what ``herald.sharding.make_tag`` writes (a lower-case version 4 UUID): an address made up by
anyone else, with other characters in it, is not a return path of ours.
"""

from __future__ import annotations

import re

__all__ = ["LOCAL_PREFIX", "bounce_address", "domain_name", "is_tag", "tag_from_address"]

#: What every return path's local part starts with (before the tag).
LOCAL_PREFIX = "bounce+"
#: ``str(uuid.UUID(...))`` of ``make_tag``: version 4, RFC 4122 variant, lower-case hex.
_TAG = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
#: A domain of dot-separated LDH labels (what an address we send from may carry).
_DOMAIN = re.compile(r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
                     r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)


def is_tag(tag: str) -> bool:
    """Whether ``tag`` has the shape ``make_tag`` gives every tag."""
    return _TAG.fullmatch(tag) is not None


def domain_name(domain: str) -> str:
    """``domain`` when it is a domain name a return path can end with, else ``ValueError``
    (``HERALD_BOUNCE_DOMAIN`` is checked with it)."""
    if not _DOMAIN.fullmatch(domain):
        raise ValueError("must be a domain name, e.g. bounces.example.org")
    return domain


def bounce_address(tag: str, domain: str) -> str:
    """``bounce+{tag}@{domain}``; a ``tag`` or ``domain`` that could not be read back is refused
    with ``ValueError`` (it would bring no bounce home)."""
    if not is_tag(tag):
        raise ValueError("not a Herald tag")
    return f"{LOCAL_PREFIX}{tag}@{domain_name(domain)}"


def tag_from_address(address: str, domain: str) -> str | None:
    """The tag of a return path ``bounce+{tag}@{domain}`` (``<…>`` allowed, the domain in any
    case), or None for any other address."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, host = address.rpartition("@")
    if not at or not domain or host.lower() != domain.lower() or not local.startswith(LOCAL_PREFIX):
        return None
    tag = local[len(LOCAL_PREFIX):]
    return tag if is_tag(tag) else None
