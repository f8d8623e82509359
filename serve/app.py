"""Intake: the HTTP API (Ray Serve + FastAPI). It parses, authenticates and calls the core/shards.

Routes hold no business rule: validation is ``herald.models``, queueing is the QueueActor.
"""


import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
import ray
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from ray import serve
from ray.exceptions import RayError

from actors.clients import ChannelClient, ShardClient, SupervisorClient
from herald.actor_names import NAMESPACE, actor_name
from herald.admin_session import LoginThrottle
from herald.browser_tokens import mint_token, verify_token
from herald.channels import Channel, gateway_for
from herald.config import Settings
from herald.errors import (
    AuthError,
    HeraldError,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unavailable,
    ValidationError,
)
from herald.metrics import ChannelActorStats, MetricsSnapshot, render_prometheus
from herald.models import validate_notification
from herald.notification import Notification
from herald.open_store import open_store
from herald.outcome import Outcome
from herald.receipts import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    fax_receipt,
    twilio_receipt,
)
from herald.shard_health import ShardHealth, health_report
from herald.sharding import shard_of_tag
from herald.webhook_secrets import WebhookSecrets, secret_view
from serve.admin import admin_router, attach_admin
from serve.answers import JsonBody, install_error_handlers, item_error
from serve.auth import UNAUTHENTICATED_BODY_LIMIT, KeyRing, client_of
from serve.batcher import ShardBatcher
from serve.callback_guard import CallbackGuard
from serve.enqueue import ShardRouter
from serve.inbox import attach_inbox, inbox_router
from serve.openapi import describe
from serve.suppressions import attach_suppressions, suppressions_router
from serve.unsubscribe import attach_unsubscribe, unsubscribe_router
from serve.users import attach_users, users_router

MAX_WAIT_SECONDS = 60.0
#: Receipts gather this long before they go to their shard together: a provider waits seconds
#: for our answer, and one call and one commit then carry many.
RECEIPT_WINDOW_SECONDS = 0.05
#: How long ``/v1/browser-endpoint`` waits for a gateway that is (re)starting, maybe elsewhere.
GATEWAY_WAIT_SECONDS = 10.0
OPERATOR = "operator"
#: ``/healthz`` takes a shard that does not answer within this for down.
HEALTH_TIMEOUT = 2.0
log = logging.getLogger("herald.intake")
STATIC = Path(__file__).parent / "static"


@functools.cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()

app = FastAPI(title="Herald", version="0.1.0", docs_url="/docs", redoc_url=None)
describe(app)
install_error_handlers(app)
# Routes outside ``Intake`` (each module's ``attach_*`` hands it the replica's ``Intake``).
ROUTERS = ((admin_router, attach_admin), (users_router, attach_users),
           (suppressions_router, attach_suppressions), (unsubscribe_router, attach_unsubscribe),
           (inbox_router, attach_inbox))
for router, _ in ROUTERS:
    app.include_router(router)


@serve.deployment(
    ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000,
    logging_config={"log_level": "WARNING", "enable_access_log": False},
)
@serve.ingress(app)
class Intake:
    def __init__(self, settings: Settings, shards: list[ShardClient],
                 supervisor: SupervisorClient) -> None:
        self.settings = settings
        self.shards = shards
        self.supervisor = supervisor
        self.router = ShardRouter(shards)
        self.receipt_batchers: list[ShardBatcher[Outcome, bool]] = [
            ShardBatcher(shard.receipts, window=RECEIPT_WINDOW_SECONDS) for shard in shards]
        self.keys = KeyRing(settings.api_keys)
        self.callback_guard = CallbackGuard(settings.callback_allow)
        self.channels = frozenset(settings.channels_configured())
        self._browser_secret = (settings.browser_secret or "").encode()
        self._webhook_secrets = WebhookSecrets(open_store(settings))
        self._gateways: dict[int, ChannelClient] = {}  # gateway index → its actor
        self.rejected: Counter[str] = Counter()  # 429/503 answers per tenant
        self._waiting: Counter[str] = Counter()  # ?wait requests held open per tenant
        self._operator = KeyRing({k: OPERATOR for k in (settings.metrics_token, settings.admin_key) if k})
        #: Wrong operator/admin keys per client address, on every endpoint that takes one.
        self.throttle = LoginThrottle()
        for _, attach in ROUTERS:
            attach(self)

    # -- helpers --------------------------------------------------------------------------
    def _tenant(self, request: Request) -> str:
        return self.keys.tenant_for(request.headers.get("authorization"))

    def _scope(self, request: Request) -> str | None:
        """Whose figures this caller may see: None (all) for the operator, else its tenant.
        The operator credential is throttled here as at the admin login (``self.throttle``)."""
        authorization = request.headers.get("authorization")
        client, now = client_of(request), time.time()
        self.throttle.check(client, now)
        with contextlib.suppress(AuthError):
            self._operator.tenant_for(authorization)
            return None
        try:
            return self.keys.tenant_for(authorization)
        except AuthError:
            if authorization:
                self.throttle.failed(client, now)
            raise

    async def _body(self, request: Request, limit: int | None = None) -> bytes:
        """The request body, refused (413) as soon as it is over ``limit``, chunked or not."""
        limit = limit or self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _json(self, request: Request, limit: int | None = None) -> Any:
        body = await self._body(request, limit)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"body is not valid JSON: {exc}", field="body") from None

    def _deliverable(self, notification: Notification) -> None:
        """A channel with neither a provider nor capture is refused now, not failed later."""
        if notification.channel not in self.channels:
            raise ValidationError(
                f"type: no provider is configured for {notification.channel.key} (configure"
                f" one, or list it in HERALD_CAPTURE for the local capture peers)", field="type")

    def _shard(self, tag: str) -> ShardClient:
        index = shard_of_tag(tag, len(self.shards))
        if index is None:
            raise NotFound(f"no notification {tag}")
        return self.shards[index]

    # -- routes ---------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz(self) -> Response:
        """200 while every shard is up or starting; 503 naming each shard that is down and why."""
        asked = await asyncio.gather(*(asyncio.wait_for(s.health(), HEALTH_TIMEOUT)
                                       for s in self.shards), return_exceptions=True)
        now = time.time()
        healths = [a if isinstance(a, ShardHealth) else ShardHealth.unreachable(
            i, f"not answering: {type(a).__name__}", now) for i, a in enumerate(asked)]
        status, body = health_report(healths)
        return JsonBody(body, status_code=status,
                        headers={"Retry-After": "2"} if status == 503 else None)

    @app.post("/v1/notifications")
    async def create(self, request: Request) -> Response:
        tenant = self._tenant(request)
        raw = await self._json(request)
        notification = validate_notification(raw, tenant, time.time(), len(self.shards),
                                             request.headers.get("Idempotency-Key"))
        self._deliverable(notification)
        await self.callback_guard.check_notification(notification)
        (result,) = await self.router.enqueue([notification])
        if isinstance(result, HeraldError):
            self.rejected[tenant] += 1
            raise result
        details = {"tag": result.tag, "pos": result.pos}
        if result.duplicate:
            return JsonBody({"details": details, "duplicate": True}, status_code=200)
        return JsonBody({"details": details}, status_code=202)

    @app.post("/v1/notifications/batch")
    async def create_batch(self, request: Request) -> Response:
        tenant = self._tenant(request)
        raw = await self._json(request)
        if not isinstance(raw, dict) or not isinstance(raw.get("notifications"), list):
            raise ValidationError("body must be {\"notifications\": [...]}", "notifications")
        items = raw["notifications"]
        if not items or len(items) > self.settings.max_batch:
            raise ValidationError(
                f"notifications must hold 1 to {self.settings.max_batch} entries", "notifications")
        now = time.time()
        shards = len(self.shards)
        out: list[dict[str, Any]] = [{}] * len(items)
        valid: list[Notification] = []
        positions: list[int] = []
        for i, item in enumerate(items):
            try:
                notification = validate_notification(item, tenant, now, shards)
                self._deliverable(notification)
                valid.append(notification)
                positions.append(i)
            except ValidationError as exc:
                field = f"notifications.{i}.{exc.field}" if exc.field else f"notifications.{i}"
                out[i] = item_error(exc, field)
        refused = await self.callback_guard.refusals(valid)  # index in valid → its error
        for j, error in refused.items():
            out[positions[j]] = item_error(
                error, f"notifications.{positions[j]}.requester.callback_url")
        valid = [n for j, n in enumerate(valid) if j not in refused]
        positions = [p for j, p in enumerate(positions) if j not in refused]
        for i, result in zip(positions, await self.router.enqueue(valid), strict=True) if valid else ():
            if isinstance(result, HeraldError):
                self.rejected[tenant] += 1
                out[i] = item_error(result)
            else:
                entry: dict[str, Any] = {"details": {"tag": result.tag, "pos": result.pos}}
                if result.duplicate:
                    entry["duplicate"] = True
                out[i] = entry
        return JsonBody({"results": out}, status_code=202)

    @app.get("/v1/notifications/{tag}")
    async def status(self, tag: str, request: Request, wait: float = 0.0) -> Response:
        tenant = self._tenant(request)
        if not 0 <= wait <= MAX_WAIT_SECONDS:
            raise ValidationError(f"wait must be between 0 and {MAX_WAIT_SECONDS:.0f}", "wait")
        if wait > 0 and self._waiting[tenant] >= self.settings.max_waits_per_tenant:
            # One tenant's long polls must not hold every slot of intake.
            raise TooManyRequests(f"at most {self.settings.max_waits_per_tenant} waiting status"
                                  " requests at once; poll without wait or retry shortly")
        self._waiting[tenant] += wait > 0
        try:
            return JsonBody(await self._shard(tag).get(tag, tenant, wait))
        finally:
            self._waiting[tenant] -= wait > 0

    @app.delete("/v1/notifications/{tag}")
    async def cancel(self, tag: str, request: Request) -> Response:
        tenant = self._tenant(request)
        return JsonBody(await self._shard(tag).cancel(tag, tenant))

    # -- provider receipts --------------------------------------------------------------
    async def _receipt(self, outcome: Outcome | None) -> Response:
        """204 once the receipt is applied, or stored durably to apply when our own ack comes;
        404 for a notification that is not ours; a shard that cannot store it answers 503, so
        the provider sends it again."""
        if outcome is None:
            return Response(status_code=204)  # an interim status (queued, sending…)
        index = shard_of_tag(outcome.tag, len(self.shards))
        if index is None:
            raise NotFound(f"no notification {outcome.tag}")
        (applied,) = await self.receipt_batchers[index].submit([outcome])
        if not applied:
            raise NotFound(f"no notification {outcome.tag} is waiting for this receipt")
        return Response(status_code=204)

    @app.post("/v1/providers/twilio/status")
    async def twilio_status(self, request: Request) -> Response:
        """Twilio's StatusCallback: form fields signed with X-Twilio-Signature."""
        backup = request.query_params.get("account") == "backup"
        token = (self.settings.twilio_backup_auth_token if backup else None) or \
            self.settings.twilio_auth_token
        url, form, token = await self.twilio_form(request, token)
        outcome = twilio_receipt(url, form, request.headers.get("x-twilio-signature"),
                                        token, provider="twilio-backup" if backup else "twilio")
        return await self._receipt(outcome)

    async def twilio_form(self, request: Request,
                          token: str | None) -> tuple[str, dict[str, str], str]:
        """A Twilio webhook's URL as Twilio signed it, its form fields, and ``token`` once it
        is known to be set (never verify against an empty secret: anyone could sign)."""
        if not token:
            raise NotFound("no Twilio account is configured")
        url = self.settings.base_url() + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        body = await self._body(request, UNAUTHENTICATED_BODY_LIMIT)
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return url, form, token

    @app.post("/v1/providers/fax/status")
    async def fax_status(self, request: Request) -> Response:
        """Telnyx's fax webhook: ed25519 over ``telnyx-timestamp|body``, tag in ``client_state``.

        The signature does not cover the URL, so a ``?tag=`` (from faxes sent before the tag
        moved into ``client_state``) is accepted and never read.
        """
        if not self.settings.fax_public_key:  # nothing to verify with: accept nothing
            raise NotFound("no fax public key is configured")
        body = await self._body(request, UNAUTHENTICATED_BODY_LIMIT)
        outcome = fax_receipt(body, request.headers.get(TELNYX_SIGNATURE_HEADER),
                              request.headers.get(TELNYX_TIMESTAMP_HEADER),
                              self.settings.fax_public_key, time.time())
        return await self._receipt(outcome)

    # -- requester callbacks --------------------------------------------------------------
    @app.get("/v1/webhook-secret")
    async def webhook_secret(self, request: Request) -> Response:
        """The secret this tenant's callbacks are signed with; after a rotation, the previous
        one too while it still signs (``previous_until``)."""
        tenant = self._tenant(request)
        explicit = self.settings.webhook_secret(tenant)
        # Off the event loop: a read may go to the database (at most every RELOAD_SECONDS).
        stored = None if explicit else await asyncio.to_thread(self._webhook_secrets.get, tenant)
        view = secret_view(explicit, stored, time.time())
        if view is None:
            raise NotFound("no webhook secret for this tenant (herald up makes one at start)")
        return JsonBody(view)

    # -- browser --------------------------------------------------------------------------
    @app.post("/v1/browser-tokens")
    async def browser_token(self, request: Request) -> Response:
        """Mint a short-lived token a browser uses to connect as ``uid`` of this tenant."""
        tenant = self._tenant(request)
        raw = await self._json(request)
        uid = raw.get("uid") if isinstance(raw, dict) else None
        if isinstance(uid, bool) or not isinstance(uid, int | str) or not str(uid) \
                or len(str(uid)) > 128:
            raise ValidationError("uid: a user id (string or integer) is required", "uid")
        token, expires_at = mint_token(self._browser_secret, tenant, str(uid),
                                       self.settings.browser_token_ttl, time.time())
        return JsonBody({"token": token, "expires_at": expires_at})

    @app.get("/v1/browser-endpoint")
    async def browser_endpoint(self, token: str | None = None) -> Response:
        """The WebSocket URL of the gateway that owns this token's user (token included): the
        one that gateway advertises, so it follows the node the gateway runs on (503 while it
        restarts; ``herald.js`` asks again)."""
        if not token:
            raise AuthError("a browser token is required (?token=…, from POST /v1/browser-tokens)")
        identity = verify_token(self._browser_secret, token, time.time())
        gateways = self.settings.pools.get(Channel.BROWSER.key, 1)
        url = await self._gateway_endpoint(gateway_for(identity.tenant, identity.uid, gateways))
        return JsonBody({"url": f"{url}?{urlencode({'token': token})}"})

    async def _gateway_endpoint(self, index: int) -> str:
        """Where browser gateway ``index`` says browsers connect: asked each time, since Ray
        may have restarted it on another node."""
        try:
            gateway = self._gateways.get(index) or ChannelClient(ray.get_actor(
                actor_name(Channel.BROWSER, index), namespace=NAMESPACE))
            async with asyncio.timeout(GATEWAY_WAIT_SECONDS):
                answer = await gateway.ping()
        except (ValueError, TimeoutError, RayError) as exc:  # not there, restarting, failed
            self._gateways.pop(index, None)
            log.warning("browser gateway %d unavailable: %s", index, type(exc).__name__)
            raise Unavailable("the browser gateway is starting; try again") from None
        self._gateways[index] = gateway
        if not answer.endpoint:
            raise Unavailable("the browser gateway is starting; try again")
        return answer.endpoint

    @app.get("/static/herald.js")
    async def herald_js(self) -> Response:
        return Response(_static("herald.js"), media_type="text/javascript; charset=utf-8")

    @app.get("/demo")
    async def demo(self) -> Response:
        return HTMLResponse(_static("demo.html"))

    @app.post("/v1/notifications/{tag}/retry")
    async def revive(self, tag: str, request: Request) -> Response:
        """Retry a dead-lettered notification (fresh attempt budget); 409 unless it is dead."""
        tenant = self._tenant(request)
        answer = await self._shard(tag).revive(tag, tenant)
        return JsonBody(answer, status_code=202)

    @app.get("/v1/queue")
    async def queue(self, request: Request) -> Response:
        """Depth per shard and channel: the caller's own notifications, or every tenant's for
        the operator credential."""
        scope = self._scope(request)
        stats = await asyncio.gather(*(s.stats(scope) for s in self.shards))
        return JsonBody({"shards": [{"shard": s.shard, "depth": s.depth} for s in stats]})

    @app.get("/metrics")
    async def metrics(self, request: Request) -> Response:
        """Prometheus text: a tenant key sees its own counters and depth; the operator
        credential (``HERALD_METRICS_TOKEN``) sees the service's, actors and circuits included."""
        scope = self._scope(request)
        stats = await asyncio.gather(*(s.stats(scope) for s in self.shards))
        actors: tuple[ChannelActorStats, ...] = ()
        restarts: dict[str, int] = {}
        if scope is None:
            supervisor, channel_actors = await asyncio.gather(
                self.supervisor.describe(), self.supervisor.channel_stats())
            actors = tuple(ping.stats() for ping in channel_actors)
            restarts = dict(supervisor.restarts)
        snapshot = MetricsSnapshot(shards=tuple(stats), channel_actors=actors, restarts=restarts,
                                   rejected=self.rejected.get(scope, 0) if scope else
                                   sum(self.rejected.values()))
        return Response(render_prometheus(snapshot), media_type=CONTENT_TYPE_PLAIN_0_0_4)
