"""Which providers serve which channel, built from Settings (one instance per channel actor)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from actors.providers.base import Provider
from herald.channels import Channel
from herald.config import Settings

OnConnect = Callable[[str, str], Awaitable[Sequence[str] | None]]


def _sms(settings: Settings) -> list[Provider]:
    from actors.providers.twilio_sms import TwilioSmsProvider

    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        raise ValueError("SMS needs HERALD_TWILIO_ACCOUNT_SID and HERALD_TWILIO_AUTH_TOKEN")
    callback = f"{settings.base_url()}/v1/providers/twilio/status"
    providers: list[Provider] = [TwilioSmsProvider(
        settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_base_url,
        settings.twilio_from, callback, name="twilio")]
    if settings.twilio_backup_base_url:
        providers.append(TwilioSmsProvider(
            settings.twilio_backup_account_sid or settings.twilio_account_sid,
            settings.twilio_backup_auth_token or settings.twilio_auth_token,
            settings.twilio_backup_base_url, settings.twilio_from,
            f"{callback}?account=backup", name="twilio-backup"))
    return providers


def _fax(settings: Settings) -> list[Provider]:
    from actors.providers.http_fax import HttpFaxProvider

    if not (settings.fax_api_key and settings.fax_connection_id and settings.fax_from):
        raise ValueError("FAX needs HERALD_FAX_API_KEY, HERALD_FAX_CONNECTION_ID, HERALD_FAX_FROM")
    return [HttpFaxProvider(
        settings.fax_api_key, connection_id=settings.fax_connection_id,
        default_from=settings.fax_from, base_url=settings.fax_base_url,
        webhook_url=f"{settings.base_url()}/v1/providers/fax/status")]


def build_providers(
    channel: Channel, settings: Settings, index: int = 0, on_connect: OnConnect | None = None,
    node_ip: str | None = None,
) -> list[Provider]:
    """The ordered provider list of ``channel`` for actor ``index``; ``node_ip`` is the IP of the
    node the actor runs on (a browser gateway advertises it)."""
    if channel is Channel.EMAIL:
        from actors.providers.smtp_email import SmtpProvider

        target = settings.smtp_target()
        if target is None:
            raise ValueError("no SMTP server configured (HERALD_SMTP_URL)")
        return [SmtpProvider(target, settings.smtp_from, settings.smtp_pool_size,
                             settings.smtp_timeout, bounce_domain=settings.bounce_domain)]
    if channel is Channel.SMS:
        return _sms(settings)
    if channel is Channel.FAX:
        return _fax(settings)
    if channel is Channel.BROWSER:
        from actors.providers.websocket_browser import WebSocketGateway

        if not settings.browser_secret:
            raise ValueError("the browser gateway needs HERALD_BROWSER_SECRET")
        return [WebSocketGateway(settings.host, settings.browser_port + index,
                                 settings.browser_secret.encode(), on_connect,
                                 settings.browser_ack_timeout,
                                 public_url=settings.browser_public_url, node_ip=node_ip)]
    if channel is Channel.WEBHOOK:
        from actors.providers.webhook import WebhookProvider
        from herald.open_store import open_store
        from herald.webhook_secrets import WebhookSecrets

        stored = WebhookSecrets(open_store(settings))

        def secrets_for(tenant: str) -> list[str]:
            explicit = settings.webhook_secret(tenant)
            return [explicit] if explicit else stored.signing(tenant)

        return [WebhookProvider(secrets_for, allow=settings.callback_allow)]
    raise ValueError(f"no provider for channel {channel}")
