"""WebhookProvider against a real aiohttp receiver on 127.0.0.1, verified with ``standardwebhooks``.

Host names are answered by a fake resolver (never real DNS): it is how the tests show that the
connection goes to the address the policy checked, and that a name rebound to the metadata
address after intake is refused at send time.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks import Webhook, WebhookVerificationError

from actors.provider_chain import ProviderChain
from actors.providers.webhook import REFUSED, SIGNATURE_HEADER, WebhookProvider, standard_webhooks_secret
from herald import webhook_secrets
from herald.breaker import OPEN
from herald.callback_policy import CallbackAllow
from herald.channels import Channel
from herald.deployment_store import DataDirStore
from herald.outcome import Outcome
from herald.render import Message
from herald.signing import signature_matches
from herald.webhook_secrets import OVERLAP_SECONDS, WebhookSecrets
from tests.support.providers import deliver

SECRET = "acme-webhook-secret"
LOOPBACK = CallbackAllow.parse("127.0.0.1/32")


@dataclass
class Receiver:
    """What the loopback receiver got; ``fail_hosts`` (by Host header) and ``fail_paths``
    answer 500."""

    port: int = 0
    requests: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    paths: list[tuple[str, str]] = field(default_factory=list)  # (path, status) per request
    fail_hosts: set[str] = field(default_factory=set)
    fail_paths: set[str] = field(default_factory=set)

    def url(self, host: str = "127.0.0.1", path: str = "/cb") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()

    async def receive(request: web.Request) -> web.Response:
        got.requests.append((await request.read(), dict(request.headers)))
        failing = request.host.split(":")[0] in got.fail_hosts or request.path in got.fail_paths
        got.paths.append((request.path, "500" if failing else "204"))
        return web.Response(status=500 if failing else 204)

    app = web.Application()
    app.router.add_post("/{path:.*}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    got.port = runner.addresses[0][1]
    yield got
    await runner.cleanup()


class FakeResolver(AbstractResolver):
    """aiohttp's resolver interface over a table; a missing name raises as getaddrinfo does."""

    def __init__(self, **answers: str) -> None:
        self.answers = {name.replace("_", "."): address for name, address in answers.items()}
        self.asked: list[str] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = self.answers[host]
        return [{"hostname": host, "host": address, "port": port, "proto": 0, "flags": 0,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET}]

    async def close(self) -> None:
        self.closed = True


def callback(url: str, tag: str = "tag-1.delivered") -> Message:
    body = orjson.dumps({"event": "notification.status", "tag": tag.split(".")[0],
                         "status": "delivered"}).decode()
    return Message(
        tag=tag, tenant="acme", type="HERALD_CALLBACK", channel=Channel.WEBHOOK, uid="42",
        attempt=1, to=url, sender=None, subject=None, title=None, text=body, html=None,
        media_url=None, bill_to=None, expires_at=time.time() + 60,
    )


@pytest.fixture
async def provider_factory() -> AsyncIterator[list[WebhookProvider]]:
    started: list[WebhookProvider] = []
    yield started
    for provider in started:
        await provider.close()


async def start(started: list[WebhookProvider], allow: CallbackAllow = LOOPBACK,
                resolver: AbstractResolver | None = None, clock: float | None = None) -> WebhookProvider:
    provider = WebhookProvider(lambda tenant: [SECRET] if tenant == "acme" else [], timeout=5.0,
                               allow=allow, resolver=resolver or FakeResolver(),
                               clock=(lambda: clock) if clock is not None else time.time)
    await provider.start()
    started.append(provider)
    return provider


async def send(provider: WebhookProvider, message: Message) -> Outcome:
    (outcome,) = await deliver(provider, [message])
    return outcome


# ---- Standard Webhooks ---------------------------------------------------------------------

async def test_a_callback_verifies_with_the_official_library(
    receiver: Receiver, provider_factory: list[WebhookProvider]
) -> None:
    provider = await start(provider_factory)
    message = callback(receiver.url())
    outcome = await send(provider, message)
    assert (outcome.kind, outcome.info) == ("sent", {"http_status": 204})
    ((body, headers),) = receiver.requests
    assert Webhook(standard_webhooks_secret(SECRET)).verify(body, headers) == orjson.loads(message.text)
    Webhook(SECRET.encode()).verify(body, headers, json_parse=False)  # the same key, as raw bytes
    assert standard_webhooks_secret(SECRET) == "whsec_YWNtZS13ZWJob29rLXNlY3JldA=="
    assert headers["webhook-id"] == "tag-1.delivered" and headers["X-Herald-Tag"] == "tag-1"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    assert headers["webhook-signature"].startswith("v1,")
    assert signature_matches(body, headers[SIGNATURE_HEADER], SECRET)  # Herald's own, still sent


async def test_the_id_is_stable_across_retries_and_the_timestamp_is_the_attempts(
    receiver: Receiver, provider_factory: list[WebhookProvider]
) -> None:
    first = await start(provider_factory, clock=1_700_000_000.0)
    later = await start(provider_factory, clock=1_700_000_090.0)
    await send(first, callback(receiver.url()))
    await send(later, callback(receiver.url()))
    (_, one), (_, two) = receiver.requests
    assert one["webhook-id"] == two["webhook-id"] == "tag-1.delivered"
    assert (one["webhook-timestamp"], two["webhook-timestamp"]) == ("1700000000", "1700000090")


async def test_old_replayed_or_tampered_callbacks_are_refused_by_the_library(
    receiver: Receiver, provider_factory: list[WebhookProvider]
) -> None:
    verifier = Webhook(standard_webhooks_secret(SECRET))
    stale = await start(provider_factory, clock=time.time() - 600)  # signed ten minutes ago
    await send(stale, callback(receiver.url()))
    body, headers = receiver.requests[0]
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(body, headers)

    fresh = await start(provider_factory)
    await send(fresh, callback(receiver.url()))
    body, headers = receiver.requests[1]
    verifier.verify(body, headers)
    # A replay dressed up with a new timestamp no longer matches its signature:
    replayed = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 60)}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(body, replayed)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(body.replace(b"delivered", b"failed"), headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(standard_webhooks_secret("another-tenant")).verify(body, headers)


async def test_a_tenant_without_a_secret_gets_no_unsigned_callback(
    receiver: Receiver, provider_factory: list[WebhookProvider]
) -> None:
    provider = await start(provider_factory)
    outcome = await send(provider, replace(callback(receiver.url()), tenant="globex"))
    assert (outcome.kind, outcome.code) == ("failed", "no_webhook_secret")
    assert receiver.requests == []


# ---- where it may post, checked again at send time ----------------------------------------

async def test_the_connection_goes_to_the_checked_address(
    receiver: Receiver, provider_factory: list[WebhookProvider]
) -> None:
    dns = FakeResolver(hooks_test="127.0.0.1")
    provider = await start(provider_factory, resolver=dns)
    outcome = await send(provider, callback(receiver.url("hooks.test")))
    assert outcome.kind == "sent" and dns.asked == ["hooks.test"]
    assert receiver.requests[0][1]["Host"] == f"hooks.test:{receiver.port}"


async def test_a_name_rebound_to_the_metadata_address_is_refused_without_connecting(
    receiver: Receiver, provider_factory: list[WebhookProvider]
) -> None:
    # Intake saw a public address; by send time the name answers 169.254.169.254.
    dns = FakeResolver(hooks_test="169.254.169.254", intranet_test="10.0.0.7")
    provider = await start(provider_factory, resolver=dns)
    for host in ("hooks.test", "intranet.test"):
        outcome = await send(provider, callback(f"http://{host}/latest/meta-data"))
        assert (outcome.kind, outcome.code) == ("failed", REFUSED)
        assert "requester.callback_url" in (outcome.error or "")
    assert dns.asked == ["hooks.test", "intranet.test"]


async def test_literals_and_bad_urls_are_refused_before_any_connection(
    receiver: Receiver, provider_factory: list[WebhookProvider]
) -> None:
    provider = await start(provider_factory, allow=CallbackAllow())
    for url in (receiver.url(), "http://[::1]:9/cb", "http://169.254.169.254/latest",
                f"http://u:p@127.0.0.1:{receiver.port}/cb", "http://127.1/cb"):
        outcome = await send(provider, callback(url))
        assert (outcome.kind, outcome.code) == ("failed", REFUSED), url
    assert receiver.requests == []


async def test_an_allowed_host_name_is_trusted_whatever_it_resolves_to(
    receiver: Receiver, provider_factory: list[WebhookProvider]
) -> None:
    dns = FakeResolver(hooks_internal="127.0.0.1")
    provider = await start(provider_factory, allow=CallbackAllow.parse("hooks.internal"),
                           resolver=dns)
    assert (await send(provider, callback(receiver.url("hooks.internal")))).kind == "sent"
    assert (await send(provider, callback(receiver.url("other.internal")))).kind == "retry"  # NXDOMAIN


async def test_close_releases_the_resolver(provider_factory: list[WebhookProvider]) -> None:
    dns = FakeResolver()
    provider = await start(provider_factory, resolver=dns)
    await provider.close()
    provider_factory.remove(provider)
    assert dns.closed


# ---- breakers per destination ---------------------------------------------------------------

def test_the_breaker_key_is_the_tenant_and_the_destination_host_and_port() -> None:
    provider = WebhookProvider(lambda tenant: [SECRET])
    key = provider.breaker_key
    assert key(callback("https://Hooks.Example.com/a")) == "webhook:acme:hooks.example.com:443"
    assert key(callback("http://hooks.example.com/b?x=1")) == "webhook:acme:hooks.example.com:80"
    assert key(callback("http://[2001:db8::1]:8080/")) == "webhook:acme:2001:db8::1:8080"
    assert key(callback("ftp://x/")) == "webhook:acme:invalid"
    other = replace(callback("https://hooks.example.com/a"), tenant="globex")
    assert key(other) == "webhook:globex:hooks.example.com:443"


async def test_one_dead_destination_opens_only_its_own_circuit(
    receiver: Receiver, provider_factory: list[WebhookProvider]
) -> None:
    receiver.fail_hosts.add("dead.test")
    dns = FakeResolver(dead_test="127.0.0.1", alive_test="127.0.0.1")
    provider = await start(provider_factory, resolver=dns)
    chain = ProviderChain([provider], threshold=2, cooldown=60.0)
    dead, alive = receiver.url("dead.test"), receiver.url("alive.test")
    assert [(await chain.send(callback(dead))).kind for _ in range(2)] == ["retry", "retry"]
    assert chain.breakers[f"webhook:acme:dead.test:{receiver.port}"].state == OPEN
    deferred = await chain.send(callback(dead))
    assert (deferred.kind, deferred.retry_after) == ("defer", pytest.approx(60.0, abs=5))
    assert (await chain.send(callback(alive))).kind == "sent"
    assert len(receiver.requests) == 3  # the deferred callback never left
    assert chain.states() == {"webhook": "closed"} and chain.open_destinations() == {"webhook": 1}


async def test_one_tenants_failing_endpoint_does_not_open_the_circuit_for_another_on_that_host(
    receiver: Receiver, provider_factory: list[WebhookProvider]
) -> None:
    # One host serves both tenants: acme's path always answers 500, globex's is healthy.
    receiver.fail_paths.add("/acme")
    dns = FakeResolver(hooks_shared_test="127.0.0.1")
    provider = WebhookProvider(lambda tenant: [SECRET], timeout=5.0, allow=LOOPBACK, resolver=dns)
    await provider.start()
    provider_factory.append(provider)
    chain = ProviderChain([provider], threshold=2, cooldown=60.0)
    acme = callback(receiver.url("hooks.shared.test", "/acme"))
    globex = replace(callback(receiver.url("hooks.shared.test", "/globex")), tenant="globex")
    assert [(await chain.send(acme)).kind for _ in range(2)] == ["retry", "retry"]
    assert (await chain.send(acme)).kind == "defer"  # acme's circuit is open
    assert [(await chain.send(globex)).kind for _ in range(3)] == ["sent"] * 3
    assert [path for path, _ in receiver.paths] == ["/acme"] * 2 + ["/globex"] * 3
    assert chain.open_destinations() == {"webhook": 1}


# ---- the default secret and its rotation -----------------------------------------------------

async def test_a_rotated_secret_signs_beside_the_old_one_for_the_overlap_only(
    receiver: Receiver, provider_factory: list[WebhookProvider], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhook_secrets, "RELOAD_SECONDS", 0.0)  # see a rotation at once
    now = [1_700_000_000.0]
    stored = WebhookSecrets(DataDirStore(tmp_path), clock=lambda: now[0])
    stored.ensure(["acme"])
    (old,) = stored.signing("acme")
    provider = WebhookProvider(stored.signing, timeout=5.0, allow=LOOPBACK)
    await provider.start()
    provider_factory.append(provider)

    def received(index: int) -> tuple[bytes, dict[str, str]]:
        return receiver.requests[index]

    assert (await send(provider, callback(receiver.url()))).kind == "sent"
    body, headers = received(0)
    Webhook(old).verify(body, headers)  # the whsec_ secret, as GET /v1/webhook-secret gives it
    assert signature_matches(body, headers[SIGNATURE_HEADER], old)

    new = WebhookSecrets(DataDirStore(tmp_path), clock=lambda: now[0]).rotate("acme").current
    now[0] += OVERLAP_SECONDS - 60
    assert (await send(provider, callback(receiver.url()))).kind == "sent"
    body, headers = received(1)
    for secret in (old, new):  # a receiver on either secret accepts it
        Webhook(secret).verify(body, headers)
        assert signature_matches(body, headers[SIGNATURE_HEADER], secret)
    assert len(headers["webhook-signature"].split()) == 2

    now[0] += 120
    assert (await send(provider, callback(receiver.url()))).kind == "sent"
    body, headers = received(2)
    Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(old).verify(body, headers)
    assert not signature_matches(body, headers[SIGNATURE_HEADER], old)
