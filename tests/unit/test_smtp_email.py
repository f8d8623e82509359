"""SmtpProvider and CaptureSmtpServer against real aiosmtpd servers on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from actors.providers.smtp_email import SmtpProvider, _error_to_provider_error
from capture import outbox
from capture.smtp import CaptureSmtpServer, LoopbackController
from herald.config import SmtpTarget
from herald.email_message import build_email
from herald.errors import PermanentProviderError, TransientProviderError
from herald.outcome import Outcome
from herald.render import Message
from tests.support.providers import deliver

HOST = "127.0.0.1"
SENDER = "Herald <herald@example.org>"


def make_message(tag: str = "tag-1", **changes: Any) -> Message:
    message = Message(
        tag=tag, tenant="acme", type="CM_EMAIL", channel="email", uid="7", attempt=1,
        to="Bob <bob@example.com>", sender=None, subject="Hello", title=None,
        text="Hi Bob", html="<p>Hi <b>Bob</b></p>", media_url=None, bill_to=None,
        expires_at=4_102_444_800.0,
    )
    return dataclasses.replace(message, **changes)


def wire(envelope: Envelope) -> bytes:
    """The message as the server received it (``content`` is str when it decodes data)."""
    assert isinstance(envelope.original_content, bytes)
    return envelope.original_content


class Recorder:
    """aiosmtpd handler that records each accepted message; ``refuse[stage]`` is sent instead."""

    def __init__(self) -> None:
        self.received: list[tuple[Session, Envelope, EmailMessage]] = []
        self.quits = 0
        self.refuse: dict[str, str] = {}

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "MAIL" in self.refuse:
            return self.refuse["MAIL"]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "RCPT" in self.refuse:
            return self.refuse["RCPT"]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if "DATA" in self.refuse:
            return self.refuse["DATA"]
        parsed = BytesParser(policy=policy.default).parsebytes(wire(envelope))
        self.received.append((session, envelope, cast(EmailMessage, parsed)))
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"


class Server(LoopbackController):
    """A recording server that also counts the TCP connections it accepted."""

    def __init__(self, recorder: Recorder | None = None, **kwargs: Any) -> None:
        self.recorder = recorder or Recorder()
        self.connections = 0
        self.sessions: list[SMTP] = []
        super().__init__(self.recorder, hostname=HOST, port=0, server_hostname="localhost",
                         **kwargs)

    def factory(self) -> SMTP:
        self.connections += 1
        smtpd: SMTP = super().factory()
        self.sessions.append(smtpd)
        return smtpd

    def start(self) -> None:
        super().start()
        self.connections = 0  # start() opened one connection to check the server is up

    def drop_connections(self) -> None:
        """Hang up on every client, as a server does when its idle timeout fires."""

        async def drop() -> None:
            for smtpd in self.sessions:
                if smtpd.transport is not None:
                    smtpd.transport.close()

        asyncio.run_coroutine_threadsafe(drop(), self.loop).result(timeout=5)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "herald-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_file, key_file


@pytest.fixture
def server_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return context


@pytest.fixture
def client_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[0]))


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(**kwargs: Any) -> Server:
        server = Server(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    return start_server()


@pytest.fixture
async def connect(
    start_server: Callable[..., Server],
) -> AsyncIterator[Callable[..., SmtpProvider]]:
    """Build providers for a port; they are closed before the servers stop."""
    providers: list[SmtpProvider] = []

    def connect(
        port: int, *, pool_size: int = 8, tls_context: ssl.SSLContext | None = None, **target: Any
    ) -> SmtpProvider:
        provider = SmtpProvider(SmtpTarget(HOST, port, **target), SENDER, pool_size=pool_size,
                                timeout=5.0, tls_context=tls_context)
        providers.append(provider)
        return provider

    yield connect
    for provider in providers:
        await provider.close()


async def deliver_one(provider: SmtpProvider, message: Message) -> Outcome:
    [outcome] = await deliver(provider, [message])
    return outcome


async def test_message_arrives_with_headers_and_both_parts(
    server: Server, connect: Callable[..., SmtpProvider]
) -> None:
    outcome = await connect(server.port).send(make_message("tag-1"))

    assert outcome == Outcome("tag-1", "sent", "smtp", provider_id="<tag-1@example.org>")
    [(_, envelope, email)] = server.recorder.received
    assert envelope.mail_from == "herald@example.org"
    assert envelope.rcpt_tos == ["bob@example.com"]
    assert email["From"] == SENDER
    assert email["To"] == "Bob <bob@example.com>"
    assert email["Subject"] == "Hello"
    assert email["Message-ID"] == "<tag-1@example.org>"
    assert email["X-Herald-Tag"] == "tag-1"
    assert email["Date"] is not None
    assert email.get_content_type() == "multipart/alternative"
    text, html = email.get_body(("plain",)), email.get_body(("html",))
    assert text is not None and text.get_content() == "Hi Bob\r\n"
    assert html is not None and html.get_content() == "<p>Hi <b>Bob</b></p>\r\n"


@pytest.mark.parametrize(
    ("sender", "message_id"),
    [
        ("news@shop.example", "<t@shop.example>"),
        ("Shop <news@shop.example>", "<t@shop.example>"),
        ("postmaster", "<t@herald>"),
    ],
)
def test_message_id_uses_the_sender_domain(sender: str, message_id: str) -> None:
    built = build_email(make_message("t", sender=sender, subject=None, html=None), SENDER)
    assert built.message_id == message_id
    email = parse(built.data)
    assert email["Message-ID"] == message_id
    assert email["From"] == sender
    assert email["Subject"] == ""
    assert email["MIME-Version"] == "1.0"
    assert email.get_content_type() == "text/plain"
    assert built.data_7bit is built.data  # nothing 8-bit to re-encode


def parse(data: bytes) -> EmailMessage:
    return cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(data))


def header_block(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        ("Jürgen Müller <j@example.com>", "Grüße 你好"),
        ("Bob <bob@example.com>", "Grüße 你好, " * 12),  # folded into several encoded words
        ('"Smith, Bob" <bob@example.com>', "a plain subject that is too long for one line " * 3),
    ],
)
async def test_non_ascii_and_long_headers_arrive_intact_in_7bit_headers(
    server: Server, connect: Callable[..., SmtpProvider], to: str, subject: str
) -> None:
    long_html = "<p>Grüße 你好</p>" + "<br>" * 40  # a long line: not sent as is
    message = make_message(to=to, subject=subject, text="Grüße 你好\nzweite Zeile", html=long_html)
    assert (await connect(server.port).send(message)).kind == "sent"

    [(_, envelope, email)] = server.recorder.received
    assert (email["To"], email["Subject"]) == (to, subject)
    text, html = email.get_body(("plain",)), email.get_body(("html",))
    assert text is not None and text.get_content() == "Grüße 你好\r\nzweite Zeile\r\n"
    assert html is not None and html.get_content() == long_html + "\r\n"
    assert text["Content-Transfer-Encoding"] == "8bit"
    assert html["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert "BODY=8BITMIME" in envelope.mail_options
    lines = header_block(wire(envelope))
    assert all(line.isascii() and len(line) <= 78 for line in lines)  # RFC 2047, folded
    assert sum(line.startswith(b"MIME-Version: 1.0") for line in lines) == 1


async def test_a_server_without_8bitmime_gets_7bit_data(
    start_server: Callable[..., Server], connect: Callable[..., SmtpProvider]
) -> None:
    server = start_server(decode_data=True)  # aiosmtpd then does not offer 8BITMIME
    message = make_message(subject="Grüße", text="Grüße 你好", html="<p>你好</p>")
    assert (await connect(server.port).send(message)).kind == "sent"

    [(_, envelope, email)] = server.recorder.received
    assert wire(envelope).isascii()
    assert "BODY=8BITMIME" not in envelope.mail_options
    text, html = email.get_body(("plain",)), email.get_body(("html",))
    assert text is not None and text.get_content() == "Grüße 你好\n"
    assert html is not None and html.get_content() == "<p>你好</p>\n"


class RefuseEhlo(Recorder):
    """A server of old that knows HELO only."""

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        return ["502 5.5.2 Error: command not recognized"]


async def test_a_server_that_refuses_ehlo_is_greeted_with_helo_and_gets_7bit_data(
    start_server: Callable[..., Server], connect: Callable[..., SmtpProvider]
) -> None:
    server = start_server(recorder=RefuseEhlo())
    assert (await connect(server.port).send(make_message(text="Grüße"))).kind == "sent"
    [(session, envelope, email)] = server.recorder.received
    assert not session.extended_smtp and envelope.mail_options == []
    assert wire(envelope).isascii()
    text = email.get_body(("plain",))
    assert text is not None and text.get_content() == "Grüße\n"


@pytest.mark.parametrize(
    ("sender", "to", "mail_from", "rcpt_tos"),
    [
        (None, "bob@example.com", "herald@example.org", ["bob@example.com"]),
        ("shop@shop.example", '"Smith, Bob" <bob@example.com>', "shop@shop.example",
         ["bob@example.com"]),
        ("Shop <news@shop.example>", "Bob <bob@example.com>, al@example.net", "news@shop.example",
         ["bob@example.com", "al@example.net"]),
    ],
)
async def test_the_envelope_comes_from_the_from_and_to_headers(
    server: Server, connect: Callable[..., SmtpProvider],
    sender: str | None, to: str, mail_from: str, rcpt_tos: list[str],
) -> None:
    outcome = await connect(server.port).send(make_message(sender=sender, to=to))
    assert outcome.kind == "sent"
    [(_, envelope, email)] = server.recorder.received
    assert (envelope.mail_from, envelope.rcpt_tos) == (mail_from, rcpt_tos)
    assert email["To"] == to


@pytest.mark.parametrize("smtputf8", [True, False])
async def test_a_non_ascii_address_needs_smtputf8(
    start_server: Callable[..., Server], connect: Callable[..., SmtpProvider], smtputf8: bool
) -> None:
    server = start_server(enable_SMTPUTF8=smtputf8)
    message = make_message(to="Jürgen <jürgen@example.com>", subject="Grüße")
    outcome = await deliver_one(connect(server.port), message)
    if not smtputf8:
        assert (outcome.kind, outcome.code, server.recorder.received) == ("failed", None, [])
        return
    assert outcome.kind == "sent"
    [(_, envelope, email)] = server.recorder.received
    assert envelope.rcpt_tos == ["jürgen@example.com"]
    assert "SMTPUTF8" in envelope.mail_options
    assert (email["To"], email["Subject"]) == ("Jürgen <jürgen@example.com>", "Grüße")


async def test_sequential_messages_reuse_one_connection(
    server: Server, connect: Callable[..., SmtpProvider]
) -> None:
    provider = connect(server.port)
    for n in range(5):
        assert (await provider.send(make_message(f"tag-{n}"))).kind == "sent"
    assert len(server.recorder.received) == 5
    assert server.connections == 1


async def test_concurrent_messages_use_at_most_pool_size_connections_and_close_quits_them(
    server: Server, connect: Callable[..., SmtpProvider]
) -> None:
    provider = connect(server.port, pool_size=3)
    outcomes = await deliver(provider, [make_message(f"tag-{n}") for n in range(40)])

    assert [o.kind for o in outcomes] == ["sent"] * 40
    assert len({o.provider_id for o in outcomes}) == 40
    assert len(server.recorder.received) == 40
    assert server.connections == 3
    await provider.close()
    assert server.recorder.quits == 3
    outcome = await deliver_one(provider, make_message("late"))
    assert (outcome.kind, server.connections) == ("retry", 3)


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
@pytest.mark.parametrize(
    ("reply", "kind", "code"),
    [("451 4.3.0 try again later", "retry", "451"), ("550 5.1.1 no such user", "failed", "550")],
)
async def test_server_reply_decides_the_outcome(
    server: Server, connect: Callable[..., SmtpProvider],
    stage: str, reply: str, kind: str, code: str,
) -> None:
    server.recorder.refuse[stage] = reply
    outcome = await deliver_one(connect(server.port), make_message())
    assert (outcome.kind, outcome.code, outcome.provider) == (kind, code, "smtp")
    assert outcome.error is not None and code in outcome.error


async def test_a_connection_that_raised_is_not_reused(
    server: Server, connect: Callable[..., SmtpProvider]
) -> None:
    provider = connect(server.port)
    server.recorder.refuse["RCPT"] = "550 5.1.1 no such user"
    assert (await deliver_one(provider, make_message("bad"))).kind == "failed"
    server.recorder.refuse.clear()
    assert (await provider.send(make_message("good"))).kind == "sent"
    assert server.connections == 2


@pytest.mark.parametrize("noticed", [False, True], ids=["stale", "noticed"])
async def test_a_dropped_idle_connection_is_replaced(
    server: Server, connect: Callable[..., SmtpProvider], noticed: bool
) -> None:
    provider = connect(server.port)
    assert (await provider.send(make_message("first"))).kind == "sent"
    server.drop_connections()
    if noticed:  # let the client see the hang-up; otherwise its next command runs into it
        await asyncio.sleep(0.05)
    assert (await provider.send(make_message("second"))).kind == "sent"
    assert [email["X-Herald-Tag"] for _, _, email in server.recorder.received] == [
        "first", "second"
    ]
    assert server.connections == 2


async def test_a_server_that_is_down_means_retry(connect: Callable[..., SmtpProvider]) -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind((HOST, 0))
        provider = connect(bound.getsockname()[1])
        outcome = await deliver_one(provider, make_message())
    assert (outcome.kind, outcome.code) == ("retry", None)


@pytest.mark.parametrize("field", ["to", "sender", "subject", "tag"])
@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r"])
async def test_a_header_with_cr_or_lf_fails_without_network_traffic(
    server: Server, connect: Callable[..., SmtpProvider], field: str, breaker: str
) -> None:
    value = f"x@example.com{breaker}Bcc: victim@example.net"
    outcome = await deliver_one(connect(server.port), make_message(**{field: value}))
    assert (outcome.kind, outcome.code) == ("failed", None)
    assert server.connections == 0


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("subject", "Hello\x0bBcc: victim@example.net", "invalid Subject header"),
        ("subject", "Hello\u2028there", "invalid Subject header"),
        ("tag", "tag\x1c1", "invalid X-Herald-Tag header"),
        ("to", "bob\x85@example.com", "invalid To header"),
        ("to", "undisclosed-recipients:;", "invalid sender or recipient address"),
        ("sender", "<>", "invalid sender or recipient address"),
        ("to", "b@<example.com", "invalid sender or recipient address"),
    ],
)
async def test_an_invalid_header_or_address_fails_without_network_traffic(
    server: Server, connect: Callable[..., SmtpProvider], field: str, value: str, error: str
) -> None:
    outcome = await deliver_one(connect(server.port), make_message(**{field: value}))
    assert (outcome.kind, outcome.code, outcome.error) == ("failed", None, error)
    assert server.connections == 0


def accept_user_secret(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = auth_data == LoginPassword(b"user", b"secret")
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


async def test_auth_over_plain_connection(
    start_server: Callable[..., Server], connect: Callable[..., SmtpProvider]
) -> None:
    server = start_server(authenticator=accept_user_secret, auth_require_tls=False)
    provider = connect(server.port, username="user", password="secret")
    assert (await provider.send(make_message())).kind == "sent"
    [(session, _, _)] = server.recorder.received
    assert session.login_data == b"user"


async def test_a_refused_login_is_retried_not_failed(
    start_server: Callable[..., Server], connect: Callable[..., SmtpProvider]
) -> None:
    server = start_server(authenticator=accept_user_secret, auth_require_tls=False)
    provider = connect(server.port, username="user", password="wrong")
    outcome = await deliver_one(provider, make_message())
    assert (outcome.kind, outcome.code) == ("retry", "535")
    assert server.recorder.received == []


async def test_starttls_then_auth(
    start_server: Callable[..., Server], connect: Callable[..., SmtpProvider],
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
) -> None:
    server = start_server(tls_context=server_tls, require_starttls=True,
                          authenticator=accept_user_secret, auth_required=True)
    provider = connect(server.port, starttls=True, username="user", password="secret",
                       tls_context=client_tls)
    assert (await provider.send(make_message())).kind == "sent"
    [(session, _, _)] = server.recorder.received
    assert session.ssl is not None
    assert session.login_data == b"user"


async def test_implicit_tls(
    start_server: Callable[..., Server], connect: Callable[..., SmtpProvider],
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
) -> None:
    server = start_server(ssl_context=server_tls)
    provider = connect(server.port, use_tls=True, tls_context=client_tls)
    assert (await provider.send(make_message())).kind == "sent"
    assert len(server.recorder.received) == 1


@pytest.mark.parametrize(
    ("error", "connecting", "expected", "code"),
    [
        (aiosmtplib.SMTPServerDisconnected("gone"), False, TransientProviderError, None),
        (aiosmtplib.SMTPReadTimeoutError("slow"), False, TransientProviderError, None),
        (TimeoutError(), False, TransientProviderError, None),
        (ConnectionResetError(), False, TransientProviderError, None),
        (aiosmtplib.SMTPResponseException(421, "closing"), False, TransientProviderError, "421"),
        (aiosmtplib.SMTPResponseException(554, "no"), False, PermanentProviderError, "554"),
        (aiosmtplib.SMTPResponseException(554, "no"), True, TransientProviderError, "554"),
        (aiosmtplib.SMTPRecipientsRefused([]), False, TransientProviderError, None),
        (ValueError("bad address"), False, PermanentProviderError, None),
        (aiosmtplib.SMTPNotSupported("no SMTPUTF8"), False, PermanentProviderError, None),
        (aiosmtplib.SMTPException("no STARTTLS"), True, TransientProviderError, None),
    ],
)
def test_error_mapping(
    error: Exception, connecting: bool, expected: type[Exception], code: str | None
) -> None:
    mapped = _error_to_provider_error(error, connecting=connecting)
    assert type(mapped) is expected
    assert mapped.provider_code == code


async def test_capture_server_writes_the_outbox(
    tmp_path: Path, connect: Callable[..., SmtpProvider]
) -> None:
    with CaptureSmtpServer(tmp_path, port=0) as capture:
        assert capture.port != 0
        provider = connect(capture.port)
        outcomes = await deliver(provider, [
            make_message("tag-html"),
            make_message("tag-text", html=None, subject="Grüße", sender="shop@shop.example",
                         text="Grüße, Bob\nzweite Zeile"),
        ])
        assert [o.kind for o in outcomes] == ["sent", "sent"]
        await provider.close()

    entries = sorted(outbox.read(tmp_path, "email"), key=lambda e: e["tag"])
    assert [{k: e[k] for k in e if k != "at"} for e in entries] == [
        {"channel": "email", "from": SENDER, "to": ["bob@example.com"], "subject": "Hello",
         "message_id": "<tag-html@example.org>", "tag": "tag-html", "text": "Hi Bob",
         "html": "<p>Hi <b>Bob</b></p>"},
        {"channel": "email", "from": "shop@shop.example", "to": ["bob@example.com"],
         "subject": "Grüße", "message_id": "<tag-text@shop.example>", "tag": "tag-text",
         "text": "Grüße, Bob\nzweite Zeile", "html": None},
    ]
