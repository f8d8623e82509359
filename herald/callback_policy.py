"""Which requester callback URLs Herald may call: public http(s) targets, or what the operator allows.

A callback URL is chosen by whoever holds an API key, and Herald's workers POST to it from
inside Herald's network. Unchecked, that is a way in: the cloud metadata service
(169.254.169.254), an admin port on localhost, a database on a private address. The rule:

* ``http`` or ``https`` only, with a host; no credentials (``user:pass@``); no control
  characters or spaces (CR/LF would split a request line); IPv4 only in its canonical form.
* Every address the host resolves to must be public: not loopback, private, link-local,
  multicast, unspecified, reserved, shared (100.64/10) or otherwise not globally routable
  (``ipaddress``'s ``is_global``). An IPv4 address inside IPv6 (``::ffff:a.b.c.d``, NAT64
  ``64:ff9b::/96``) is judged as the IPv4 address it reaches.
* Unless the operator allows it in ``HERALD_CALLBACK_ALLOW`` (``CallbackAllow``): a listed
  host name is trusted whatever it resolves to; an address inside a listed network is
  allowed. Each address is judged on its own, so a name that resolves to one allowed and one
  refused address is refused.

Pure: the caller resolves the name and passes the addresses in (intake:
``serve.callback_guard``; at send time: the webhook provider's resolver, which also makes the
connection go to the addresses it checked).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic_core import core_schema

from herald.errors import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The field every refusal names.
FIELD = "requester.callback_url"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_UNSAFE_TEXT = re.compile(r"[\x00-\x20\x7f]")


def _host_key(host: str) -> str:
    """One spelling per host: lower case, no trailing dot (``Hooks.Internal.``)."""
    return host.lower().rstrip(".")


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the IPv4-in-IPv6 forms."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True, slots=True)
class CallbackAllow:
    """The operator's exceptions (``HERALD_CALLBACK_ALLOW``): host names and networks."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: str | Iterable[str]) -> CallbackAllow:
        """``"127.0.0.1/32, hooks.internal"`` (or a list of entries) → CallbackAllow.

        An address without a prefix is one host (``/32``, ``/128``); host bits in a CIDR are
        ignored (``10.1.2.3/8`` is ``10.0.0.0/8``). Raises ValueError naming the bad entry.
        """
        items = entries.split(",") if isinstance(entries, str) else list(entries)
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for number, raw in enumerate(items, 1):
            if not isinstance(raw, str):
                raise ValueError(f"entry {number} must be a string")
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = _host_key(entry)
            if "/" in entry or not _HOST_NAME.fullmatch(name) or name.replace(".", "").isdigit():
                raise ValueError(f"entry {number} is neither a host name nor an address or CIDR")
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks))

    @classmethod
    def coerce(cls, value: object) -> CallbackAllow:
        """A CallbackAllow as it is, else ``parse`` of a string or a list (a TOML array)."""
        if isinstance(value, CallbackAllow):
            return value
        if not isinstance(value, str | list | tuple):
            raise ValueError("must be host names or CIDRs separated by commas")
        return cls.parse(value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        """A settings field validated by ``coerce``, written back as its text form."""
        return core_schema.no_info_plain_validator_function(
            cls.coerce, serialization=core_schema.plain_serializer_function_ser_schema(str))

    def allows_host(self, host: str) -> bool:
        return _host_key(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        candidates = [address, _embedded_ipv4(address)]
        return any(candidate in network for candidate in candidates if candidate is not None
                   for network in self.networks if network.version == candidate.version)

    def __str__(self) -> str:
        return ",".join([*sorted(self.hosts), *(str(network) for network in self.networks)])


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """Where a callback URL points: its host (lower case), port, and the address if a literal."""

    host: str
    port: int
    address: IPAddress | None


def _refuse(problem: str) -> ValidationError:
    return ValidationError(f"{FIELD}: {problem}", field=FIELD)


def parse_callback_url(url: str) -> CallbackTarget:
    """Check a callback URL's form (not where it points); raises ValidationError(field=FIELD).

    Messages never repeat the URL: it may carry credentials.
    """
    if not isinstance(url, str) or not url:
        raise _refuse("must be an http:// or https:// URL")
    if _UNSAFE_TEXT.search(url):
        raise _refuse("must not contain spaces or control characters (CR, LF…)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse("is not a valid URL (check the host and port)") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _refuse("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise _refuse("must not contain credentials (user:password@)")
    host = _host_key(parts.hostname or "")
    if not host:
        raise _refuse("must name a host")
    try:
        address: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
        if ":" in host or host.replace(".", "").isdigit():  # 127.1, 2130706433, fe80::1%eth0…
            raise _refuse("must write an IP address in its usual form (e.g. 203.0.113.7)") from None
    return CallbackTarget(host, port or _DEFAULT_PORTS[scheme], address)


def unsafe_kind(address: IPAddress) -> str | None:
    """What kind of address this is if Herald must not call it (``"link-local"``), else None."""
    judged = _embedded_ipv4(address) or address
    for kind, refused in (
        ("unspecified", judged.is_unspecified), ("loopback", judged.is_loopback),
        ("link-local", judged.is_link_local), ("multicast", judged.is_multicast),
        ("reserved", judged.is_reserved), ("private", judged.is_private),
        ("non-public", not judged.is_global),
    ):
        if refused:
            return kind
    return None


def check_addresses(host: str, addresses: Sequence[IPAddress], allow: CallbackAllow) -> None:
    """Refuse (ValidationError) unless ``host`` is allowed or each of its addresses is."""
    if allow.allows_host(host):
        return
    if not addresses:
        raise _refuse(f"the host {_host_key(host)!r} does not resolve")
    for address in addresses:
        if allow.allows_address(address):
            continue
        kind = unsafe_kind(address)
        if kind is not None:
            raise _refuse(f"must not point at a {kind} address")


def check_callback_url(url: str, addresses: Sequence[IPAddress], allow: CallbackAllow) -> None:
    """The whole rule: the URL's form, then where it points (``addresses``: what its host
    resolves to; ignored when the host is an IP address, which is judged itself)."""
    target = parse_callback_url(url)
    check_addresses(target.host, [target.address] if target.address else addresses, allow)


def addresses_of(infos: Iterable[tuple[Any, ...]]) -> list[IPAddress]:
    """The distinct addresses in ``getaddrinfo`` results, in order (scope ids kept)."""
    seen: dict[IPAddress, None] = {}
    for info in infos:
        seen.setdefault(ipaddress.ip_address(info[4][0]), None)
    return list(seen)
