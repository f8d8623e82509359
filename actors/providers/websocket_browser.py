"""Browser provider: a WebSocket gateway pushing notifications to connected users, confirmed by ack.

One ``WebSocketGateway`` per browser ChannelActor, serving ``ws://host:port/ws?token=<token>``.
The token (``herald.browser_tokens``) is checked before the upgrade: a wrong path gets 404, a
missing, forged or expired token 401, a user over ``max_connections_per_user`` 429.

``send`` is only ``delivered`` when one of the user's connections acks the tag: "sent is not
delivered" (novu#1247). A user with no connection, a send nobody acks within ``ack_timeout``,
and a user whose last connection drops before acking all give ``park``: the queue keeps the
notification and the actor unparks it when ``on_connect`` reports the user back, in order: what
the shard released goes out before any newer send of the user (``herald.catch_up``).
Frames for one user leave in the order ``send`` was called (one write lock per user).
Logs carry tenant, uid and tag only: never tokens (the wire log redacts them) nor content.

Per frame the gateway does no more than it must: the frame is encoded once, written straight to
each connection's transport (a timer only for a connection already behind), and once written
its slot goes back to the channel actor (``Provider.release_slot``) while the send waits for the
ack, so the actor keeps leasing while acks are on their way. Sends awaiting an ack are kept in
one ``herald.browser_acks.AwaitingAcks`` with a single timer for all their deadlines.

Once started a gateway knows its ``endpoint``, the URL ``/v1/browser-endpoint`` gives browsers
(``websocket_wire.advertised_url``): it follows the gateway when Ray restarts it on another node.
"""

from __future__ import annotations

import asyncio
import enum
import http
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from actors.providers.base import Provider
from actors.providers.websocket_wire import WS_PATH, Ack, advertised_url, encode_frame, read_frame
from actors.providers.websocket_wire import wire_log as _wire_log
from herald.browser_acks import AwaitingAcks
from herald.browser_tokens import BrowserIdentity, verify_token
from herald.catch_up import CatchUp
from herald.errors import AuthError
from herald.outcome import Outcome
from herald.render import Message

__all__ = ["WebSocketGateway", "WS_PATH", "MAX_FRAME_BYTES", "advertised_url"]

log = logging.getLogger(__name__)

#: How long a reconnecting user's unpark waits for their parks still being recorded.
PARK_SETTLE_SECONDS = 5.0
#: How long newer sends of a user who is back wait for what their shard released to go out.
CATCH_UP_SECONDS = 5.0
#: Largest frame a browser may send us (acks and pings are tiny).
MAX_FRAME_BYTES = 64 * 1024
#: Sends awaiting an ack beyond which a written frame keeps its slot until its outcome: bounds
#: what browsers that read but do not ack make a gateway hold (a task and a lease each).
MAX_UNACKED = 4096
#: A frame that leaves less than this in a connection's write buffer cannot make the write wait
#: (websockets pauses writing at 32 KiB): such a write needs no timer.
FAST_WRITE_BYTES = 16 * 1024

#: Tells the shard a user is here; answers the tags it released for them (None: not known).
OnConnect = Callable[[str, str], Awaitable[Sequence[str] | None]]
UserKey = tuple[str, str]


@dataclass(eq=False)
class _User:
    """One connected user: their open connections and the order their frames are written in.

    Dropped when the last connection closes: what it awaits parks, and a later connection
    starts a fresh ``_User``, so an old send can never write to a new connection nor be acked
    by it. Sends awaiting an ack are found by this object (``AwaitingAcks``), never by uid.
    """

    connections: set[ServerConnection] = field(default_factory=set)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: While what the shard released for them is on its way back: newer sends wait behind it.
    catch_up: CatchUp | None = None

    def begin_catch_up(self) -> CatchUp:
        """A release is asked for: until it has answered and what it released has gone out,
        newer sends wait (in the catch-up running, or a new one)."""
        if self.catch_up is None or self.catch_up.over:
            self.catch_up = CatchUp()
        self.catch_up.begin()
        return self.catch_up


class _Answer(enum.Enum):
    """How a send awaiting its ack ends."""

    ACKED = "acked"
    GONE = "gone"  # the user's last connection closed first
    SILENT = "silent"  # no ack within ack_timeout


class WebSocketGateway(Provider):
    """Deliver ``Message``s to the browsers of their user over WebSocket, confirmed by ack."""

    name = "websocket"

    def __init__(
        self,
        host: str,
        port: int,
        secret: bytes,
        on_connect: OnConnect | None = None,
        ack_timeout: float = 10.0,
        max_connections_per_user: int = 20,
        public_url: str | None = None,
        node_ip: str | None = None,
        max_unacked: int = MAX_UNACKED,
    ) -> None:
        """``public_url``: a ``HERALD_BROWSER_PUBLIC_URL`` template; ``node_ip``: the IP of the node
        this runs on (Ray's), for the endpoint of a gateway bound to every interface;
        ``max_unacked``: sends awaiting an ack beyond which slots are no longer released early."""
        if not secret:
            raise ValueError("secret must be non-empty")
        if ack_timeout <= 0:
            raise ValueError("ack_timeout must be > 0")
        if max_connections_per_user < 1:
            raise ValueError("max_connections_per_user must be >= 1")
        self.host = host
        #: The configured port until ``start``, then the one bound (useful with port 0).
        self.port = port
        self._secret = secret
        self._on_connect = on_connect
        self._ack_timeout = ack_timeout
        self._max_per_user = max_connections_per_user
        self._max_unacked = max_unacked
        self._awaiting: AwaitingAcks[_User, asyncio.Future[_Answer]] = AwaitingAcks(ack_timeout)
        #: The one timer of every ack deadline: at the oldest's.
        self._expiry: asyncio.TimerHandle | None = None
        self._public_url = public_url
        self._node_ip = node_ip
        self._server: Server | None = None
        self._users: dict[UserKey, _User] = {}
        # Filled by the handshake check, read once by the handler; weak so that a handshake
        # that never completes leaves nothing behind.
        self._identities: weakref.WeakKeyDictionary[ServerConnection, BrowserIdentity] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        #: Parks answered but not yet recorded by the shard: tag → user.
        self._parking: dict[str, UserKey] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``host:port``; idempotent."""
        if self._server is not None:
            return
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._authenticate,
            max_size=MAX_FRAME_BYTES,
            compression=None,  # tiny frames; a deflate context per idle browser costs memory
            logger=_wire_log,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.endpoint = advertised_url(self.host, self.port, self._node_ip, self._public_url)
        log.info("websocket gateway listening",
                 extra={"host": self.host, "port": self.port, "endpoint": self.endpoint})

    async def close(self) -> None:
        """Stop listening, close every connection (1001) and park every send awaiting an ack."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def connected_users(self) -> int:
        return len(self._users)

    def connections(self) -> int:
        return sum(len(user.connections) for user in self._users.values())

    def is_connected(self, tenant: str, uid: str) -> bool:
        """Whether the user has an open connection here (e.g. to unpark after a late park)."""
        return (tenant, uid) in self._users

    def unacked(self) -> int:
        """Sends whose frame is written and whose ack has not come yet."""
        return len(self._awaiting)

    # -- sending ------------------------------------------------------------------------------

    async def send(self, message: Message) -> Outcome:
        key = (message.tenant, message.uid)
        user = self._users.get(key)
        if user is None:
            self._parking[message.tag] = key
            return Outcome(message.tag, "park", self.name)
        released = False
        if user.catch_up is not None and not user.catch_up.over:
            released = await user.catch_up.admit(message.tag)
            if self._users.get(key) is not user:
                return self._park(message, "disconnected")
        if not released and self._parking and key in self._parking.values():
            # Earlier ones of the user are parked on their way to the shard: wait behind them.
            return self._park(message, "behind parked")
        frame = encode_frame(message)
        answer: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        # Registered before the write: an ack can arrive before the writer is done.
        waiting = self._awaiting.expect(user, message.tag, answer)
        try:
            # Sends reach the lock in call order (a catch-up wakes them in order): frames keep it.
            async with user.write_lock:
                written = not answer.done() and await self._fan_out(user, frame) > 0
            if not written and not answer.done():
                return self._park(message, "disconnected")
            if written:
                self._awaiting.start_clock(waiting, asyncio.get_running_loop().time())
                if self._expiry is None:
                    self._arm_expiry()
                if len(self._awaiting) <= self._max_unacked:
                    self.release_slot(message.tag)
            result = await answer
        finally:
            self._awaiting.withdraw(waiting)  # cancelled, or not written: forget it
        if result is _Answer.ACKED:
            return Outcome(message.tag, "delivered", self.name)
        if result is _Answer.GONE:
            return self._park(message, "disconnected")
        # Connected but silent: an attempt (so it ends dead at the channel's budget), not a
        # park that would resend it every few seconds until its TTL.
        log.debug("browser did not ack", extra={"tag": message.tag})
        return Outcome(message.tag, "retry", self.name, error="no ack", code="no_ack")

    def _arm_expiry(self) -> None:
        deadline = self._awaiting.next_deadline()
        if deadline is not None:
            self._expiry = asyncio.get_running_loop().call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        for answer in self._awaiting.expire(asyncio.get_running_loop().time()):
            if not answer.done():
                answer.set_result(_Answer.SILENT)
        self._arm_expiry()

    def _park(self, message: Message, reason: str) -> Outcome:
        log.debug("browser send parked", extra={"tag": message.tag, "reason": reason})
        self._parking[message.tag] = (message.tenant, message.uid)
        return Outcome(message.tag, "park", self.name, error=reason)

    async def acked(self, outcomes: Sequence[Outcome]) -> None:
        """Parks are recorded now: a user who is connected again gets them released (a park
        recorded after their reconnect's release would wait for the next connection otherwise)."""
        users = {self._parking.pop(o.tag) for o in outcomes if o.tag in self._parking}
        for tenant, uid in users:
            user = self._users.get((tenant, uid))
            if user is not None:
                self._spawn(self._release(tenant, uid, user, user.begin_catch_up()))

    async def _fan_out(self, user: _User, frame: bytes) -> int:
        """Write ``frame`` to every connection of ``user``; how many took it."""
        written = 0
        for connection in list(user.connections):  # a slow write may drop one meanwhile
            if connection.state is not State.OPEN:
                continue  # closing: it would wait for the close, and it cannot ack
            if connection.transport.get_write_buffer_size() + len(frame) < FAST_WRITE_BYTES:
                try:
                    await connection.send(frame, text=True)  # returns without waiting
                except ConnectionClosed:
                    continue
                written += 1
            elif await self._write_slow(connection, frame):
                written += 1
        return written

    async def _write_slow(self, connection: ServerConnection, frame: bytes) -> bool:
        """Write to a connection that is behind: it has ``ack_timeout`` to take it."""
        try:
            async with asyncio.timeout(self._ack_timeout):
                await connection.send(frame, text=True)
        except ConnectionClosed:
            return False
        except TimeoutError:
            # The browser does not read: drop it rather than let it hold the user's writes.
            # It reconnects, and everything it has not acked is sent again, in order.
            log.warning("browser too slow, connection dropped", extra={"id": str(connection.id)})
            connection.transport.abort()
            return False
        return True

    # -- connections --------------------------------------------------------------------------

    def _authenticate(self, connection: ServerConnection, request: Request) -> Response | None:
        """Before the upgrade: the right path, a valid token, and room for one more connection."""
        url = urlsplit(request.path)
        if url.path != WS_PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        tokens = parse_qs(url.query).get("token", [])
        if len(tokens) != 1:
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "Missing token\n")
        try:
            identity = verify_token(self._secret, tokens[0], time.time())
        except AuthError:
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "Invalid or expired token\n")
        user = self._users.get((identity.tenant, identity.uid))
        if user is not None and len(user.connections) >= self._max_per_user:
            return connection.respond(http.HTTPStatus.TOO_MANY_REQUESTS, "Too many connections\n")
        self._identities[connection] = identity
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        identity = self._identities.pop(connection, None)
        if identity is None:  # not through _authenticate: cannot happen, never serve it
            await connection.close(code=1011)
            return
        key = (identity.tenant, identity.uid)
        user = self._users.get(key)
        if user is None:
            user = self._users[key] = _User()
        user.connections.add(connection)
        extra = {"tenant": identity.tenant, "uid": identity.uid}
        log.debug("browser connected", extra={**extra, "connections": len(user.connections)})
        self._spawn(self._release(identity.tenant, identity.uid, user, user.begin_catch_up(),
                                  settle=True))
        # A connection lives no longer than the token that opened it: the client reconnects
        # with a fresh token (herald.js does) or loses access.
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, identity.expires_at - time.time()),
            lambda: self._spawn(connection.close(code=4001, reason="token expired")))
        try:
            async for raw in connection:
                pong = self._receive(user, raw)
                if pong is not None:
                    await connection.send(pong)
        except ConnectionClosed:
            pass
        finally:
            expiry.cancel()
            user.connections.discard(connection)
            if not user.connections:
                if self._users.get(key) is user:
                    del self._users[key]
                if user.catch_up is not None:
                    user.catch_up.finish()  # its waiters find the user gone: they park
                for answer in self._awaiting.drop(user):
                    if not answer.done():
                        answer.set_result(_Answer.GONE)
            log.debug("browser disconnected", extra=extra)

    def _receive(self, user: _User, raw: str | bytes) -> str | None:
        """Handle one incoming frame of ``user``; the pong to send back, if it was a ping.

        Only the sender's own ``_User`` is searched, so nobody can ack another user's tag.
        """
        frame = read_frame(raw)
        if isinstance(frame, Ack):
            for answer in self._awaiting.ack(user, frame.tag):
                if not answer.done():
                    answer.set_result(_Answer.ACKED)
            return None
        return frame

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, tenant: str, uid: str, user: _User, catch_up: CatchUp,
                       settle: bool = False) -> None:
        """Have the shard release what waits for the user, and hold their newer sends until
        that has gone out (up to ``CATCH_UP_SECONDS``). ``settle`` (the user is back): first
        let the parks of theirs still on their way to the shard be recorded (up to
        ``PARK_SETTLE_SECONDS``), or those would arrive after the ones released before them."""
        deadline = time.monotonic() + PARK_SETTLE_SECONDS
        while settle and (tenant, uid) in self._parking.values() and time.monotonic() < deadline:  # noqa: ASYNC110 - parks come and go in two places; a short bounded poll
            await asyncio.sleep(0.01)
        try:
            async with asyncio.timeout(CATCH_UP_SECONDS):
                catch_up.released(await self._notify_connect(tenant, uid) or ())
                await catch_up.wait_over()
        except TimeoutError:
            log.warning("browser catch-up cut short", extra={"tenant": tenant, "uid": uid})
        finally:
            catch_up.finish()  # over already, unless timed out or cancelled (the gateway closes)
            if user.catch_up is catch_up:
                user.catch_up = None

    async def _notify_connect(self, tenant: str, uid: str) -> Sequence[str] | None:
        """Tell the actor the user is back (it unparks their notifications); never fatal."""
        if self._on_connect is None:
            return None
        try:
            return await self._on_connect(tenant, uid)
        except Exception:
            log.exception("on_connect failed", extra={"tenant": tenant, "uid": uid})
            return None
