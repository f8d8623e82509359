"""The callback policy (pure) and intake's guard around it (with a fake resolver: no real DNS)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence

import pytest

from herald.callback_policy import (
    FIELD,
    CallbackAllow,
    IPAddress,
    addresses_of,
    check_callback_url,
    parse_callback_url,
    unsafe_kind,
)
from herald.errors import Unavailable, ValidationError
from serve.callback_guard import CallbackGuard, callback_url_of
from tests.unit.conftest import make_notification

NOBODY = CallbackAllow()
PUBLIC = "93.184.215.14"  # a value only: nothing here ever connects or resolves for real


def ips(*texts: str) -> list[IPAddress]:
    return [ipaddress.ip_address(text) for text in texts]


def refusal(url: str, addresses: Sequence[IPAddress] = (), allow: CallbackAllow = NOBODY) -> str:
    with pytest.raises(ValidationError) as caught:
        check_callback_url(url, addresses, allow)
    assert caught.value.field == FIELD == "requester.callback_url" and caught.value.status == 422
    return caught.value.message


# ---- where a URL may point ----------------------------------------------------------------

def test_public_addresses_pass() -> None:
    public = ips(PUBLIC, "2606:2800:21f:cb07::1")
    assert [unsafe_kind(address) for address in public] == [None, None]
    # check_callback_url answers nothing: a refusal is a ValidationError, which fails the test.
    check_callback_url("https://hooks.example.com/cb", public, NOBODY)
    check_callback_url(f"http://{PUBLIC}:8080/cb", [], NOBODY)  # a literal is judged itself
    assert "does not resolve" in refusal("https://hooks.example.com/cb", [])  # the same URL, no answer


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("fc00::1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("224.0.0.1", "multicast"),
    ("239.1.2.3", "multicast"), ("ff02::1", "multicast"), ("240.0.0.1", "reserved"),
    ("100.64.0.1", "non-public"), ("203.0.113.7", "private"),
    # IPv4 inside IPv6 is judged as the IPv4 address it reaches:
    ("::ffff:169.254.169.254", "link-local"), ("::ffff:127.0.0.1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"),
])
def test_addresses_that_are_not_public_are_refused(address: str, kind: str) -> None:
    assert unsafe_kind(ipaddress.ip_address(address)) == kind
    assert f"must not point at a {kind} address" in refusal("https://hooks.example.com/", ips(address))
    literal = f"[{address}]" if ":" in address else address
    assert kind in refusal(f"http://{literal}:8080/cb")


def test_every_address_of_a_name_must_be_allowed() -> None:
    # One public answer does not excuse a private one (a name can round-robin into the network).
    assert "link-local" in refusal("https://hooks.example.com/", ips(PUBLIC, "169.254.169.254"))
    allow = CallbackAllow.parse("10.0.0.0/8")
    check_callback_url("https://hooks.example.com/", ips(PUBLIC, "10.9.9.9"), allow)
    assert "link-local" in refusal("https://hooks.example.com/", ips("10.9.9.9", "169.254.169.254"),
                                   allow)


def test_a_name_that_does_not_resolve_is_refused() -> None:
    assert "does not resolve" in refusal("https://nowhere.example/cb", [])


def test_the_allow_list_covers_hosts_and_networks() -> None:
    allow = CallbackAllow.parse("127.0.0.1/32, Hooks.Internal., fd00::/8")
    check_callback_url("http://127.0.0.1:9000/cb", [], allow)
    check_callback_url("http://[::ffff:127.0.0.1]:9000/cb", [], allow)
    check_callback_url("http://localhost:9000/cb", ips("127.0.0.1"), allow)
    check_callback_url("http://hooks.internal/cb", ips("10.0.0.1", "169.254.169.254"), allow)  # trusted
    check_callback_url("http://HOOKS.internal./cb", [], allow)  # not even resolved
    check_callback_url("http://svc.local/cb", ips("fd12::1"), allow)
    assert "loopback" in refusal("http://127.0.0.2/cb", allow=allow)
    assert "loopback" in refusal("http://localhost/cb", ips("127.0.0.1", "::1"), allow)
    assert "link-local" in refusal("http://other.internal/cb", ips("169.254.169.254"), allow)


# ---- the URL's form -----------------------------------------------------------------------

@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://hooks.example.com/cb", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("hooks.example.com/cb", "http:// or https://"),
    ("", "http:// or https://"),
    ("https:///cb", "must name a host"),
    ("https://user:hunter2@hooks.example.com/cb", "credentials"),
    ("https://token@hooks.example.com/cb", "credentials"),
    ("https://hooks.example.com/cb\r\nX-Evil: 1", "control characters"),
    ("https://hooks.example.com/c b", "spaces"),
    ("https://hooks.example.com:99999/cb", "not a valid URL"),
    ("https://[fe80::1/cb", "not a valid URL"),
    ("http://127.1/cb", "usual form"),
    ("http://2130706433/cb", "usual form"),
])
def test_malformed_urls_are_refused_without_repeating_them(url: str, problem: str) -> None:
    message = refusal(url, ips(PUBLIC))
    assert problem in message and "hunter2" not in message and "Evil" not in message


def test_parse_callback_url() -> None:
    assert parse_callback_url("https://Hooks.Example.com./cb") == parse_callback_url(
        "HTTPS://hooks.example.com:443/other")
    target = parse_callback_url("http://[2001:db8::1]:8080/cb")
    assert (target.host, target.port, target.address) == ("2001:db8::1", 8080, ips("2001:db8::1")[0])
    assert parse_callback_url("http://hooks.example.com/").port == 80


def test_parse_the_allow_list() -> None:
    allow = CallbackAllow.parse("127.0.0.1, 10.1.2.3/8,hooks.internal,, ::1 ,")
    assert allow.hosts == {"hooks.internal"}
    assert [str(n) for n in allow.networks] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert CallbackAllow.parse(["a.internal", "192.168.0.0/16"]) == CallbackAllow.parse(
        "a.internal,192.168.0.0/16")
    assert CallbackAllow.parse(str(allow)) == allow and CallbackAllow.parse("") == NOBODY
    for bad in ("127.0.0.1/33", "hooks internal", "http://x", "127.1", "a_/b"):
        with pytest.raises(ValueError, match="entry 2 is neither"):
            CallbackAllow.parse(f"ok.internal,{bad}")


def test_addresses_of_getaddrinfo_results() -> None:
    infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 443)),
             (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%eth0", 443, 0, 2)),
             (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 443))]
    found = addresses_of(infos)
    assert [str(a) for a in found] == ["10.0.0.1", "fe80::1%eth0"]
    assert unsafe_kind(found[1]) == "link-local"


# ---- intake's guard: resolve, cache, refuse ------------------------------------------------

class FakeDns:
    """Answers from a table; a missing name raises as getaddrinfo does; counts questions."""

    def __init__(self, **answers: list[str]) -> None:
        self.answers = {name.replace("_", "."): value for name, value in answers.items()}
        self.asked: list[str] = []
        self.delay = 0.0

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        await asyncio.sleep(self.delay)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return ips(*self.answers[host])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_guard_resolves_then_applies_the_policy() -> None:
    dns = FakeDns(hooks_example_com=[PUBLIC], metadata_example_com=["169.254.169.254"])
    guard = CallbackGuard(NOBODY, resolve=dns)
    await guard.check("https://hooks.example.com/cb")
    with pytest.raises(ValidationError, match="link-local") as caught:
        await guard.check("https://metadata.example.com/latest")
    assert caught.value.field == FIELD
    with pytest.raises(ValidationError, match="does not resolve"):
        await guard.check("https://nxdomain.example.com/cb")
    with pytest.raises(ValidationError, match="credentials"):
        await guard.check("https://u:p@hooks.example.com/cb")
    with pytest.raises(ValidationError, match="loopback"):
        await guard.check("http://127.0.0.1:8080/cb")
    assert dns.asked == ["hooks.example.com", "metadata.example.com", "nxdomain.example.com"]


async def test_allowed_hosts_and_literals_are_not_resolved() -> None:
    dns = FakeDns()
    guard = CallbackGuard(CallbackAllow.parse("127.0.0.1/32,hooks.internal"), resolve=dns)
    await guard.check("http://127.0.0.1:8080/cb")
    await guard.check("http://hooks.internal/cb")
    assert dns.asked == []


async def test_answers_are_cached_for_a_short_while_and_looked_up_once_at_a_time() -> None:
    clock = Clock()
    dns = FakeDns(hooks_example_com=[PUBLIC])
    dns.delay = 0.01
    guard = CallbackGuard(NOBODY, resolve=dns, ttl=30.0, clock=clock)
    await asyncio.gather(*(guard.check(f"https://hooks.example.com/{i}") for i in range(50)))
    assert dns.asked == ["hooks.example.com"]
    clock.now += 29
    dns.answers["hooks.example.com"] = ["10.0.0.1"]
    await guard.check("https://hooks.example.com/cb")  # still the cached answer
    clock.now += 2
    with pytest.raises(ValidationError, match="private"):
        await guard.check("https://hooks.example.com/cb")
    assert dns.asked == ["hooks.example.com"] * 2


async def test_the_cache_is_bounded() -> None:
    dns = FakeDns(**{f"h{i}_example_com": [PUBLIC] for i in range(10)})
    guard = CallbackGuard(NOBODY, resolve=dns, max_hosts=3)
    for i in range(10):
        await guard.check(f"https://h{i}.example.com/")
    assert len(guard._cache) == 3


async def test_a_slow_resolver_is_unavailable_not_a_refusal() -> None:
    dns = FakeDns(hooks_example_com=[PUBLIC])
    dns.delay = 1.0
    guard = CallbackGuard(NOBODY, resolve=dns, timeout=0.05, lookup_cap=0.2)
    with pytest.raises(Unavailable):
        await guard.check("https://hooks.example.com/cb")
    await until(lambda: not guard._pending)  # the lookup went on, until its cap
    dns.delay = 0.0
    await guard.check("https://hooks.example.com/cb")  # a lookup over its cap is not cached
    assert dns.asked == ["hooks.example.com"] * 2


async def until(done: Callable[[], bool], within: float = 10.0) -> None:
    """Wait (bounded) until ``done()``."""
    async with asyncio.timeout(within):
        while not done():  # noqa: ASYNC110 - polls a plain condition
            await asyncio.sleep(0.01)


class HangingDns(FakeDns):
    """Names under ``.slow.example`` resolve only once ``release`` is set (a DNS server that
    does not answer); the others answer from the table at once."""

    def __init__(self, **answers: list[str]) -> None:
        super().__init__(**answers)
        self.release = asyncio.Event()

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        if host.endswith(".slow.example"):
            self.asked.append(host)
            await self.release.wait()
            return ips(PUBLIC)
        return await super().__call__(host, port)


async def test_one_tenants_hanging_lookups_never_hold_up_another_tenants_checks() -> None:
    dns = HangingDns(hooks_example_com=[PUBLIC])
    guard = CallbackGuard(NOBODY, resolve=dns, timeout=60.0)
    flood = [asyncio.ensure_future(guard.check(f"https://h{i}.slow.example/cb", "tenant-a"))
             for i in range(100)]
    await until(lambda: len(dns.asked) >= 4)  # tenant A's lookups hang
    await asyncio.wait_for(guard.check("https://hooks.example.com/cb", "tenant-b"), 10.0)
    assert not any(check.done() for check in flood)  # A still waits; B did not wait on A
    assert len(dns.asked) == 4 + 1  # A holds its own slots only
    dns.release.set()
    await asyncio.wait_for(asyncio.gather(*flood), 10.0)


async def test_the_timeout_counts_the_wait_for_a_slot() -> None:
    dns = HangingDns(hooks_example_com=[PUBLIC])
    guard = CallbackGuard(NOBODY, resolve=dns, timeout=0.2, tenant_lookups=1)
    with pytest.raises(Unavailable, match="in time"):
        await guard.check("https://h.slow.example/cb", "tenant-a")
    # The hung lookup keeps tenant A's one slot: A's next check gives up within its timeout,
    # without a lookup of its own, as a 503; tenant B's is answered.
    with pytest.raises(Unavailable, match="in time"):
        await asyncio.wait_for(guard.check("https://hooks.example.com/cb", "tenant-a"), 10.0)
    assert dns.asked == ["h.slow.example"]
    await guard.check("https://hooks.example.com/cb", "tenant-b")
    dns.release.set()
    await until(lambda: not guard._pending)
    await guard.check("https://x.slow.example/cb", "tenant-a")  # the slot came back


async def test_notifications_and_batches() -> None:
    dns = FakeDns(hooks_example_com=[PUBLIC], intranet_example_com=["192.168.0.10"])
    guard = CallbackGuard(NOBODY, resolve=dns)
    good = make_notification(callback_url="https://hooks.example.com/cb")
    bad = make_notification(callback_url="https://intranet.example.com/cb")
    metadata = make_notification(callback_url="http://169.254.169.254/latest/meta-data")
    plain = make_notification()
    assert callback_url_of(good) == "https://hooks.example.com/cb" and callback_url_of(plain) is None
    await guard.check_notification(good)
    await guard.check_notification(plain)
    refused = await guard.refusals([good, bad, plain, metadata])
    assert sorted(refused) == [1, 3]
    assert all(isinstance(e, ValidationError) and e.field == FIELD for e in refused.values())
    assert "private" in refused[1].message and "link-local" in refused[3].message
