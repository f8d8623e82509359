"""Which providers serve which channel, built from Settings (one instance per channel actor)."""

from __future__ import annotations

from actors.providers.base import Provider
from herald.config import Settings


def build_providers(channel: str, settings: Settings) -> list[Provider]:
    """The ordered provider list of ``channel`` (``EMAIL``, ``SMS``…)."""
    if channel == "EMAIL":
        from actors.providers.smtp_email import SmtpProvider

        target = settings.smtp_target()
        if target is None:
            raise ValueError("no SMTP server configured (HERALD_SMTP_URL)")
        return [SmtpProvider(target, settings.smtp_from, settings.smtp_pool_size,
                             settings.smtp_timeout)]
    raise ValueError(f"no provider configured for channel {channel}")
