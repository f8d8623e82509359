"""The admin console: the page at ``/admin`` and the admin API under ``/v1/admin/…``.

How it reaches the replica: the routes are plain functions on ``admin_router``, which
``serve/app.py`` includes into its FastAPI app (one line), so they are not ``Intake`` methods
and ``Intake`` stays small. ``Intake.__init__`` calls ``attach_admin(self)`` (one line), which
builds this replica's ``AdminConsole`` (``serve/admin_console.py``) over the intake's shards,
Supervisor, settings and tenant keys. Each Serve replica is a process of its own, so the
module-level console is that replica's; a route gets it from ``console()``. Like every route,
these only parse, authenticate and call: the rules are the core's (``herald.search``,
``herald.pauses``, ``herald.overview``, ``herald.admin_views``, ``herald.suppression_views``)
and the shards'.

Credentials (``herald.admin_session``): ``Authorization: Bearer <admin key>`` for scripts, or
the HttpOnly, SameSite=Strict session cookie the page's login form gets. No credential is a
401, a tenant's API key a 403. A state-changing request made with the cookie must carry the
session's ``X-CSRF-Token`` and come from this origin. The page is static HTML, CSS and JS
(``serve/static/admin/``) under a Content-Security-Policy without ``unsafe-inline``; it shows
every value with ``textContent``. The latest analytics report is served under a policy of its
own (no script, its one inline style allowed by hash) for the page's sandboxed frame.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import re
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from actors.clients import ShardClient
from herald.admin_session import SESSION_SECONDS, csrf_token, mint_session, verify_session
from herald.data_dir import DataDir
from herald.errors import AuthError, NotFound, Unavailable, ValidationError
from herald.masking import mask_contact
from herald.outbox import OUTBOX_CHANNELS, newest
from herald.pauses import pausable
from herald.search import MAX_LIMIT, merge_pages, parse_query
from herald.suppression_views import Listed, TenantList, entry_id, tenant_name
from herald.suppressions import EVERY_TENANT, MANUAL, Suppression, contact_key
from serve.admin_console import COOKIE, AdminAct, AdminConsole
from serve.answers import JsonBody
from serve.auth import UNAUTHENTICATED_BODY_LIMIT
from serve.suppressions import suppressible_contact

MAX_TAGS = 1000
STATIC = Path(__file__).parent / "static" / "admin"
STATIC_TYPES = {"admin.js": "text/javascript; charset=utf-8", "admin.css": "text/css; charset=utf-8",
                "favicon.svg": "image/svg+xml"}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
PAGE_HEADERS = API_HEADERS | {"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer",
                              "X-Frame-Options": "DENY"}
REPORT_HINT = ("no report yet: run `herald rollup`, then `herald report --out "
               "$HERALD_DATA_DIR/analytics/report.html`")

admin_router = APIRouter()
_console: AdminConsole | None = None


def attach_admin(intake: Any) -> None:
    """Called by ``Intake.__init__``: this replica's console works over ``intake``."""
    global _console
    _console = AdminConsole(intake)


def console() -> AdminConsole:
    if _console is None:
        raise Unavailable("the admin console is starting")
    return _console


@functools.cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


# -- session ------------------------------------------------------------------------------
def _secure(request: Request) -> bool:
    public = console().settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https:")


@admin_router.post("/v1/admin/session")
async def login(request: Request) -> Response:
    """The login form: ``{"key": <admin key>}`` → a session cookie and its CSRF token."""
    admin = console()
    if not admin.admin_key:
        raise AuthError("the admin console is off: set HERALD_ADMIN_KEY")
    admin.same_origin(request)
    raw = await admin.intake._json(request, UNAUTHENTICATED_BODY_LIMIT)  # not logged in yet
    key = raw.get("key") if isinstance(raw, dict) else None
    if not isinstance(key, str) or not key.strip():
        raise ValidationError("key: the admin key is required", "key")
    admin.check_key(request, key.strip(), f"Bearer {key.strip()}")
    token, expires_at = mint_session(admin.admin_key, time.time())
    response = JsonBody({"csrf": csrf_token(admin.admin_key, token), "expires_at": expires_at},
                        headers=API_HEADERS)
    response.set_cookie(COOKIE, token, max_age=int(SESSION_SECONDS), path="/", httponly=True,
                        samesite="strict", secure=_secure(request))
    return response


@admin_router.get("/v1/admin/session")
async def session_info(request: Request) -> Response:
    """Whether the caller is logged in, and its session's CSRF token. What the page asks first,
    so a missing or ended session is ``authenticated: false``, not a 401; a Bearer credential
    is checked as everywhere."""
    admin = console()
    if request.headers.get("authorization"):
        await admin.authorize(request)
        return JsonBody({"authenticated": True, "csrf": None, "expires_at": None}, headers=API_HEADERS)
    session = request.cookies.get(COOKIE)
    try:
        expires_at = await admin.verify(session) if session and admin.admin_key else None
    except AuthError:
        expires_at = None
    if expires_at is None:
        return JsonBody({"authenticated": False, "csrf": None, "expires_at": None},
                        headers=API_HEADERS)
    assert session is not None
    return JsonBody({"authenticated": True, "csrf": csrf_token(admin.admin_key, session),
                     "expires_at": expires_at}, headers=API_HEADERS)


@admin_router.delete("/v1/admin/session")
async def logout(request: Request) -> Response:
    """Ends the session for every replica (not only the cookie in this browser)."""
    admin = console()
    session = await admin.authorize(request, changes=True)
    if session is not None:
        expires_at = verify_session(admin.admin_key, session, time.time())  # authorize checked it
        await admin.revocations.revoke(session, expires_at)
    response = Response(status_code=204, headers=API_HEADERS)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=_secure(request))
    return response


# -- figures ------------------------------------------------------------------------------
@admin_router.get("/v1/admin/overview")
async def overview(request: Request) -> Response:
    admin = console()
    await admin.authorize(request)
    return JsonBody(await admin.overview(), headers=API_HEADERS)


@admin_router.get("/v1/admin/stream")
async def stream(request: Request) -> Response:
    admin = console()
    session = await admin.authorize(request)
    return StreamingResponse(admin.stream(request, session), media_type="text/event-stream",
                             headers=API_HEADERS | {"X-Accel-Buffering": "no"})


# -- notifications ------------------------------------------------------------------------
@admin_router.get("/v1/admin/notifications")
async def notifications(request: Request) -> Response:
    """Every tenant's notifications, newest first, filtered and paged (``herald.search``). A page
    may hold fewer than ``limit`` items and still have a ``next`` cursor: each shard looks at a
    bounded number of records per page."""
    admin = console()
    await admin.authorize(request)
    query = parse_query(request.query_params)
    wanted = query.with_limit(query.limit + 1)
    pages = await admin.every_shard(lambda shard: shard.admin_search(wanted))
    items, cursor = merge_pages(pages, query.limit)
    return JsonBody({"items": items, "next": cursor}, headers=API_HEADERS)


@admin_router.get("/v1/admin/notifications/{tag}")
async def notification(tag: str, request: Request) -> Response:
    admin = console()
    await admin.authorize(request)
    return JsonBody(await admin.shard(tag).admin_get(tag), headers=API_HEADERS)


async def _tags(request: Request) -> list[str]:
    raw = await console().intake._json(request)
    tags = raw.get("tags") if isinstance(raw, dict) else None
    if not isinstance(tags, list) or not 1 <= len(tags) <= MAX_TAGS \
            or not all(isinstance(t, str) and 0 < len(t) <= 200 for t in tags):
        raise ValidationError(f"tags: a list of 1 to {MAX_TAGS} tags is required", "tags")
    return tags


async def _act(request: Request, act: AdminAct, done: str) -> Response:
    admin = console()
    await admin.authorize(request, changes=True)
    tags = await _tags(request)
    results = await admin.each_tag(act, tags)
    ok = sum("error" not in r for r in results)
    admin.feed.note("info", f"operator {done} {ok} of {len(tags)} notification"
                            f"{'s' if len(tags) > 1 else ''}")
    return JsonBody({"results": results}, headers=API_HEADERS)


@admin_router.post("/v1/admin/notifications/retry")
async def retry(request: Request) -> Response:
    """Send dead or failed notifications again: ``{"tags": [...]}`` → one result per tag."""
    return await _act(request, ShardClient.admin_retry, "retried")


@admin_router.post("/v1/admin/notifications/cancel")
async def cancel(request: Request) -> Response:
    """Cancel queued or retrying notifications: ``{"tags": [...]}`` → one result per tag."""
    return await _act(request, ShardClient.admin_cancel, "cancelled")


# -- channels -----------------------------------------------------------------------------
async def _pause(request: Request, name: str, paused: bool) -> Response:
    admin = console()
    await admin.authorize(request, changes=True)
    channel = pausable(name)
    answers = await asyncio.gather(*(
        (s.pause(channel) if paused else s.resume(channel)) for s in admin.shards),
        return_exceptions=True)
    missed = [i for i, answer in enumerate(answers) if isinstance(answer, BaseException)]
    if missed:
        raise Unavailable(f"shard {', '.join(map(str, missed))} did not answer; send it again "
                          f"(the other shards have {channel.key} {'paused' if paused else 'resumed'})")
    with contextlib.suppress(Exception):  # the page hears of it now, not at the next sample
        await admin.sample(fresh=True)
    return JsonBody({"channel": channel.key, "paused": paused, "shards": len(answers)},
                    headers=API_HEADERS)


@admin_router.post("/v1/admin/channels/{channel}/pause")
async def pause(channel: str, request: Request) -> Response:
    """Lease nothing of ``channel`` (email, sms, fax, browser) until resumed, restarts included."""
    return await _pause(request, channel, True)


@admin_router.post("/v1/admin/channels/{channel}/resume")
async def resume(channel: str, request: Request) -> Response:
    return await _pause(request, channel, False)


# -- suppressed contacts ------------------------------------------------------------------
async def _listed(admin: AdminConsole, tenant: str) -> TenantList:
    """The tenant's list as shard 0 has it (every shard keeps the whole list)."""
    shard = admin.shards[0]
    listed, every = await asyncio.gather(shard.suppressions(tenant),
                                         shard.suppressions(EVERY_TENANT))
    return TenantList(admin.admin_key, tenant, listed, every)


@admin_router.get("/v1/admin/suppressions")
async def suppressions(request: Request, tenant: str = "", contact: str = "",
                       limit: int = 100) -> Response:
    """A tenant's suppressed contacts and every tenant's SMS STOPs (``every_tenant``), newest
    first, contacts masked; each row's ``id`` is what lifts it. ``contact`` finds one."""
    admin = console()
    await admin.authorize(request)
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit: must be 1 to {MAX_LIMIT}", "limit")
    listed = await _listed(admin, tenant_name(tenant))
    return JsonBody(listed.page(contact.strip() or None, limit), headers=API_HEADERS)


@admin_router.post("/v1/admin/suppressions")
async def suppress(request: Request) -> Response:
    """``{"tenant", "contact"}``: the tenant sends nothing more to ``contact`` (``manual``);
    200 with the entry there is if it is suppressed already."""
    admin = console()
    await admin.authorize(request, changes=True)
    raw = await admin.intake._json(request)
    raw = raw if isinstance(raw, dict) else {}
    tenant = tenant_name(raw.get("tenant"))
    if tenant not in admin.settings.api_keys.values():
        raise ValidationError(f"tenant: no API key is {tenant[:80]}'s", "tenant")
    contact = suppressible_contact(raw.get("contact"))
    kept = (await _listed(admin, tenant)).own(contact)
    if kept is not None:  # already suppressed: its reason (a bounce, a complaint) stays
        return JsonBody(kept.row(), headers=API_HEADERS)
    entry = Suppression(contact, MANUAL, time.time())
    await admin.every_shard(lambda s: s.suppress(tenant, entry))
    admin.feed.note("info", f"operator suppressed {mask_contact(contact)} for {tenant}")
    added = Listed(tenant, entry, entry_id(admin.admin_key, tenant, entry))
    return JsonBody(added.row(), status_code=201, headers=API_HEADERS)


@admin_router.delete("/v1/admin/suppressions")
async def lift(request: Request, tenant: str = "", contact: str = "",
               entry: str = Query("", alias="id")) -> Response:
    """Lift one entry by the ``id`` the list gave (a STOP for every tenant included), or the
    tenant's own entries of ``contact``; 404 when nothing was lifted."""
    admin = console()
    await admin.authorize(request, changes=True)
    tenant = tenant_name(tenant)
    if bool(entry) == bool(contact.strip()):
        raise ValidationError("id or contact: one of them is required", "id")
    scope, key, sender = tenant, contact_key(contact), None
    if entry:
        found = (await _listed(admin, tenant)).find(entry)
        if found is None:
            raise NotFound(f"no suppression {entry[:40]} for {tenant[:80]}")
        scope, key, sender = found.scope, found.entry.contact, found.entry.sender
    lifted = max(await admin.every_shard(lambda s: s.suppress(scope, None, key, sender)))
    if not lifted:
        raise NotFound(f"{mask_contact(key)} is not suppressed for {tenant[:80]}")
    where = "every tenant" if scope == EVERY_TENANT else tenant
    admin.feed.note("info", f"operator lifted the suppression of {mask_contact(key)} for {where}")
    return JsonBody({"lifted": lifted, "every_tenant": scope == EVERY_TENANT}, headers=API_HEADERS)


# -- outbox and analytics -----------------------------------------------------------------
@admin_router.get("/v1/admin/outbox")
async def outbox(request: Request, channel: str | None = None, limit: int = 50) -> Response:
    """The newest messages the local capture peers received (dev mode), contacts masked."""
    admin = console()
    await admin.authorize(request)
    if channel and channel not in OUTBOX_CHANNELS:
        raise ValidationError(f"channel: one of {', '.join(OUTBOX_CHANNELS)}", "channel")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit: must be 1 to {MAX_LIMIT}", "limit")
    items = await asyncio.to_thread(newest, DataDir(admin.settings.data_dir).outbox, channel or None, limit)
    return JsonBody({"items": items}, headers=API_HEADERS)


def latest_report(data_dir: Path) -> Path | None:
    """The newest report HTML in the data dir (``analytics/*.html``, ``report*.html``)."""
    return max(DataDir(data_dir).reports(), key=lambda p: p.stat().st_mtime, default=None)


async def _report_for(request: Request) -> Path | None:
    admin = console()
    await admin.authorize(request)
    return await asyncio.to_thread(latest_report, admin.settings.data_dir)


@admin_router.get("/v1/admin/analytics")
async def analytics(request: Request) -> Response:
    """Which report the console shows (``/v1/admin/report``), if there is one."""
    path = await _report_for(request)
    if path is None:
        return JsonBody({"report": None, "hint": REPORT_HINT}, headers=API_HEADERS)
    stat = path.stat()
    return JsonBody({"report": {"name": path.name, "modified_at": stat.st_mtime,
                                "bytes": stat.st_size, "url": "/v1/admin/report"}},
                    headers=API_HEADERS)


@admin_router.get("/v1/admin/report")
async def report(request: Request) -> Response:
    """The latest report's HTML, under its own policy: its one inline style by hash, no script."""
    path = await _report_for(request)
    if path is None:
        raise NotFound(REPORT_HINT)
    html = await asyncio.to_thread(path.read_bytes)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(style).digest()).decode() + "'"
        for style in re.findall(rb"<style>(.*?)</style>", html, re.DOTALL))
    policy = ("default-src 'none'; img-src data:; style-src " + (hashes or "'none'")
              + "; frame-ancestors 'self'; sandbox")
    return HTMLResponse(html, headers=API_HEADERS | {"Content-Security-Policy": policy,
                                                     "X-Frame-Options": "SAMEORIGIN"})


# -- the page -----------------------------------------------------------------------------
@admin_router.get("/admin", include_in_schema=False)
async def page() -> Response:
    return HTMLResponse(_static("admin.html"), headers=PAGE_HEADERS)


@admin_router.get("/admin/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    if name not in STATIC_TYPES:
        raise NotFound(f"no file {name[:80]}")
    return Response(_static(name), media_type=STATIC_TYPES[name],
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})
