"""Tenants' default webhook secrets: random ``whsec_`` ones kept in the data dir, rotated with an overlap."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from herald.config import Settings
from herald.deployment_store import DataDirStore
from herald.webhook_secrets import (
    FILE_NAME,
    OVERLAP_SECONDS,
    WebhookSecrets,
    hmac_key,
    secret_view,
    standard_webhooks_secret,
)
from launcher.cli import main
from launcher.deployment import ensure_webhook_secrets, prepare_data_dir

API_KEY = "hk_acme_0123456789abcdef"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_default_secret_is_random_whsec_never_the_api_key_and_kept_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_keys={API_KEY: "acme", "hk_globex": "globex"})
    assert ensure_webhook_secrets(settings, DataDirStore(tmp_path)) == ["acme", "globex"]
    stored = WebhookSecrets(DataDirStore(tmp_path))
    acme, globex = stored.signing("acme"), stored.signing("globex")
    assert len(acme) == len(globex) == 1 and acme != globex
    assert acme[0].startswith("whsec_") and API_KEY not in acme[0]
    assert 24 <= len(base64.b64decode(acme[0].removeprefix("whsec_"))) <= 32
    assert stat.S_IMODE(os.stat(tmp_path / FILE_NAME).st_mode) == 0o600
    assert standard_webhooks_secret(acme[0]) == acme[0] and len(hmac_key(acme[0])) == 32


def test_the_secret_survives_a_restart_and_explicit_ones_are_left_alone(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_keys={API_KEY: "acme", "hk_g": "globex"},
                        webhook_secrets={"globex": "operator-chosen"})
    prepare_data_dir(settings)
    first = WebhookSecrets(DataDirStore(tmp_path)).signing("acme")
    assert WebhookSecrets(DataDirStore(tmp_path)).signing("globex") == []  # it has its own
    assert ensure_webhook_secrets(settings, DataDirStore(tmp_path)) == []  # the next start makes nothing new
    prepare_data_dir(settings)
    assert WebhookSecrets(DataDirStore(tmp_path)).signing("acme") == first


def test_dev_mode_gives_the_dev_tenant_a_secret(tmp_path: Path) -> None:
    _, dev_key = prepare_data_dir(Settings(data_dir=tmp_path))
    (secret,) = WebhookSecrets(DataDirStore(tmp_path)).signing("dev")
    assert dev_key and secret.startswith("whsec_") and secret != dev_key


def test_a_rotation_signs_with_both_for_the_overlap_then_with_the_new_one_only(tmp_path: Path) -> None:
    clock = Clock()
    stored = WebhookSecrets(DataDirStore(tmp_path), clock)
    stored.ensure(["acme"])
    (old,) = stored.signing("acme")
    rotated = WebhookSecrets(DataDirStore(tmp_path), clock).rotate("acme")  # e.g. the CLI's process
    assert rotated.previous == old and rotated.current != old
    reader = WebhookSecrets(DataDirStore(tmp_path), clock)
    assert reader.signing("acme") == [rotated.current, old]
    assert secret_view("", reader.get("acme"), clock.now) == {
        "secret": rotated.current, "previous": old, "previous_until": clock.now + OVERLAP_SECONDS}
    clock.now += OVERLAP_SECONDS
    assert reader.signing("acme") == [rotated.current]
    assert secret_view("", reader.get("acme"), clock.now) == {
        "secret": rotated.current, "previous": None, "previous_until": None}


def test_the_view_of_an_operators_secret_is_its_whsec_form() -> None:
    view = secret_view("acme-webhook-secret", None, 0.0)
    assert view == {"secret": "whsec_YWNtZS13ZWJob29rLXNlY3JldA==", "previous": None,
                    "previous_until": None}
    assert secret_view("", None, 0.0) is None


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("HERALD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HERALD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HERALD_API_KEYS", f"acme:{API_KEY},globex:hk_globex")
    monkeypatch.setenv("HERALD_WEBHOOK_SECRETS", "globex:operator-chosen")
    return tmp_path / "data"


def test_herald_webhook_secret_rotate(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    WebhookSecrets(DataDirStore(env)).ensure(["acme"])
    (old,) = WebhookSecrets(DataDirStore(env)).signing("acme")
    assert main(["webhook-secret", "rotate", "acme"]) == 0
    out = capsys.readouterr().out
    new, previous = WebhookSecrets(DataDirStore(env)).signing("acme")
    assert previous == old and new != old and "rotated 'acme'" in out
    assert new not in out and old not in out  # secrets are read over the API, never printed
    assert stat.S_IMODE(os.stat(env / FILE_NAME).st_mode) == 0o600
    assert main(["webhook-secret", "rotate", "globex"]) == 2  # its secret is the operator's
    assert main(["webhook-secret", "rotate", "nobody"]) == 2
    assert "no tenant 'nobody'" in capsys.readouterr().err
