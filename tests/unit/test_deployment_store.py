"""What a deployment keeps (secrets, webhook secrets, the shard count): the data dir's files, or
one database that two deployments share, against a real PostgreSQL on loopback."""

from __future__ import annotations

import itertools
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from herald.browser_tokens import mint_token, verify_token
from herald.config import Settings
from herald.data_dir import ADMIN_KEY, BROWSER_SECRET, DEV_API_KEY, UNSUBSCRIBE_SECRET
from herald.deployment_store import DataDirStore, DeploymentStore
from herald.errors import ConfigError, DatabaseUnavailable
from herald.open_store import open_store
from herald.webhook_secrets import RELOAD_SECONDS, WebhookSecrets
from launcher.cli import main
from launcher.deployment import prepare_data_dir
from launcher.stored_secrets import dev_api_key
from tests.support.postgres import PostgresServer, free_port

_databases = itertools.count()




@pytest.fixture
def url(pg_server: PostgresServer) -> str:
    """An empty database of this test's own."""
    return pg_server.fresh_database(f"settings_{next(_databases)}")


def deployment(tmp_path: Path, name: str, url: str, **values: object) -> Settings:
    """One deployment's settings: its own data dir, the shared database."""
    return Settings(**{"data_dir": tmp_path / name, "database_url": url, "shards": 2, **values})


def files_in(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file()]


# ---- the interface, over both stores ---------------------------------------------------------

@pytest.fixture(params=["data dir", "database"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], DeploymentStore]]:
    """Opens a store: on one data dir (processes of one deployment), or on one database (as many
    deployments, each with a data dir of its own)."""
    opened: list[DeploymentStore] = []

    def make() -> DeploymentStore:
        if request.param == "data dir":
            opened.append(DataDirStore(tmp_path))
        else:
            url = request.getfixturevalue("url")
            opened.append(open_store(deployment(tmp_path, f"d{len(opened)}", url)))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], DeploymentStore]) -> DeploymentStore:
    return make_store()


def test_the_first_value_made_is_the_one_kept(store: DeploymentStore) -> None:
    assert store.get("dev-api-key") is None
    assert store.get_or_create("dev-api-key", lambda: "first") == "first"
    assert store.get_or_create("dev-api-key", lambda: "second") == "first"
    assert store.get("dev-api-key") == "first"


def test_a_change_from_a_stale_value_is_refused(store: DeploymentStore) -> None:
    assert store.compare_and_set("queue/layout.json", None, "one")
    assert not store.compare_and_set("queue/layout.json", None, "two")  # exists already
    assert store.compare_and_set("queue/layout.json", "one", "three")
    assert not store.compare_and_set("queue/layout.json", "one", "four")  # not "one" any more
    assert store.get("queue/layout.json") == "three"


def test_writers_at_once_agree_and_keep_each_others_tenants(
    make_store: Callable[[], DeploymentStore],
) -> None:
    stores = [make_store() for _ in range(8)]
    for store in stores:
        store.get(DEV_API_KEY)  # connected: the race below is between writes, not connects
    barrier = threading.Barrier(len(stores))
    made: dict[int, tuple[str, list[str]]] = {}

    def start(i: int) -> None:
        barrier.wait()
        made[i] = (dev_api_key(stores[i]), WebhookSecrets(stores[i]).ensure([f"tenant{i}"]))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({key for key, _ in made.values()}) == 1  # one dev key, whoever made it
    assert all(added == [f"tenant{i}"] for i, (_, added) in made.items())
    secrets = WebhookSecrets(stores[0])
    assert all(len(secrets.signing(f"tenant{i}")) == 1 for i in range(len(stores)))


def test_the_data_dir_keeps_each_value_in_its_file_0600(tmp_path: Path) -> None:
    settings, _ = prepare_data_dir(Settings(data_dir=tmp_path, shards=2))
    names = {DEV_API_KEY, ADMIN_KEY, BROWSER_SECRET, UNSUBSCRIBE_SECRET, "webhook-secrets.json",
             "queue/layout.json"}
    assert {p.relative_to(tmp_path).as_posix() for p in files_in(tmp_path)} == names
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in files_in(tmp_path))
    assert (tmp_path / BROWSER_SECRET).read_text() == f"{settings.browser_secret}\n"
    assert (tmp_path / UNSUBSCRIBE_SECRET).read_text() == f"{settings.unsubscribe_secret}\n"
    assert settings.unsubscribe_secret != settings.browser_secret


# ---- two deployments on one database ---------------------------------------------------------

def test_two_deployments_on_one_database_share_every_secret_and_write_none_to_a_data_dir(
    tmp_path: Path, url: str,
) -> None:
    first, first_key = prepare_data_dir(deployment(tmp_path, "a", url))
    second, second_key = prepare_data_dir(deployment(tmp_path, "b", url))
    assert first_key and first_key == second_key and first_key.startswith("hk_dev_")
    assert first.api_keys == second.api_keys == {first_key: "dev"}
    assert first.admin_key and first.admin_key == second.admin_key
    assert first.browser_secret and first.browser_secret == second.browser_secret
    assert first.unsubscribe_secret and first.unsubscribe_secret == second.unsubscribe_secret
    with open_store(first) as a, open_store(second) as b:
        (secret,) = WebhookSecrets(a).signing("dev")
        assert WebhookSecrets(b).signing("dev") == [secret] and secret.startswith("whsec_")
    assert files_in(tmp_path) == []  # neither data dir holds any of it
    # A browser token minted at one deployment is valid at the other.
    token, _ = mint_token(first.browser_secret.encode(), "dev", "76143021", 60.0, 1000.0)
    assert verify_token(second.browser_secret.encode(), token, 1001.0).uid == "76143021"


def test_keys_from_the_environment_win_and_are_never_stored(tmp_path: Path, url: str) -> None:
    given = {"api_keys": {"hk_acme_" + "a" * 20: "acme"}, "admin_key": "admin-" + "x" * 20,
             "browser_secret": "browser-" + "y" * 24, "unsubscribe_secret": "unsub-" + "u" * 24}
    settings, dev_key = prepare_data_dir(deployment(tmp_path, "a", url, **given))
    assert dev_key is None
    assert (settings.api_keys, settings.admin_key, settings.browser_secret,
            settings.unsubscribe_secret) == tuple(given.values())
    with open_store(settings) as store:
        names = (DEV_API_KEY, ADMIN_KEY, BROWSER_SECRET, UNSUBSCRIBE_SECRET)
        assert [store.get(name) for name in names] == [None] * 4


def test_a_rotation_by_one_deployment_reaches_the_others_readers_without_a_restart(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    prepare_data_dir(deployment(tmp_path, "a", url))
    reader = WebhookSecrets(open_store(deployment(tmp_path, "b", url)))  # an intake replica's
    (old,) = reader.signing("dev")
    for name in list(os.environ):
        if name.startswith("HERALD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HERALD_DATABASE_URL", url)
    monkeypatch.setenv("HERALD_DATA_DIR", str(tmp_path / "cli"))
    assert main(["webhook-secret", "rotate", "dev"]) == 0  # from anywhere, on the database
    deadline = time.monotonic() + RELOAD_SECONDS + 2
    while reader.signing("dev") == [old] and time.monotonic() < deadline:
        time.sleep(0.1)
    new, previous = reader.signing("dev")
    assert previous == old and new != old
    assert files_in(tmp_path) == []


def test_another_shard_count_on_the_same_database_is_refused_in_one_line(
    tmp_path: Path, url: str,
) -> None:
    prepare_data_dir(deployment(tmp_path, "a", url))
    with pytest.raises(ConfigError) as refused:
        prepare_data_dir(deployment(tmp_path, "b", url, shards=3))
    message = str(refused.value)
    assert message.startswith("HERALD_SHARDS: the data in the database was written by 2 shards")
    assert "\n" not in message and "HERALD_SHARDS=2" in message
    prepare_data_dir(deployment(tmp_path, "b", url))  # the recorded count starts


# ---- when the database does not answer -------------------------------------------------------

def test_an_unreachable_database_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    url = f"postgresql://herald:herald@127.0.0.1:{free_port()}/herald"
    with pytest.raises(DatabaseUnavailable) as refused:
        prepare_data_dir(deployment(tmp_path, "a", url))
    assert isinstance(refused.value, ConnectionError)  # `herald up` shows it as one line
    assert str(refused.value).startswith("HERALD_DATABASE_URL: ") and "\n" not in str(refused.value)
    assert "herald:herald@" not in str(refused.value)


def test_a_reader_signs_with_the_last_secrets_while_the_database_is_gone(
    tmp_path: Path, pg_server: PostgresServer, url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    prepare_data_dir(deployment(tmp_path, "a", url))
    reader = WebhookSecrets(open_store(deployment(tmp_path, "b", url)))
    (secret,) = reader.signing("dev")
    pg_server.sql(f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)", database="postgres")
    monkeypatch.setattr("herald.webhook_secrets.RELOAD_SECONDS", 0.0)  # it tries again now
    assert reader.signing("dev") == [secret]
    with pytest.raises(DatabaseUnavailable):  # one that never read has nothing to sign with
        WebhookSecrets(open_store(deployment(tmp_path, "c", url))).signing("dev")
