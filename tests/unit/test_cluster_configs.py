"""The deployment files against Ray's own schemas and against what the code expects.

``cluster.yaml`` (AWS) and ``cluster.gcp.yaml`` (GCP), and their PostgreSQL variants
``cluster.postgres.yaml`` and ``cluster.gcp.postgres.yaml``, go through what ``ray up`` does before
it talks to a cloud (``prepare_config`` then ``validate_config``); ``serve_config.yaml`` through
Serve's ``ServeDeploySchema``. Then the names must agree: the custom resource the shards ask for
(offered by the SQLite files' one queue node, by no node of the PostgreSQL ones), the data dir the
queue node mounts and the Serve config names, the ``database_url`` every PostgreSQL node insists
on, the import path, the setup commands that install Herald. No Ray instance is started.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors import members
from actors.members import QUEUE_RESOURCE, queue_placement
from herald.config import Settings, load_settings
from herald.errors import ConfigError
from launcher import builder
from launcher.deployment import APP_NAME, prepare_data_dir
from launcher.runtime import check_ports_free

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ["cluster.yaml", "cluster.gcp.yaml"]
#: The PostgreSQL variant of each SQLite file above (same cloud, no queue node).
POSTGRES_TWINS = {"cluster.postgres.yaml": "cluster.yaml",
                  "cluster.gcp.postgres.yaml": "cluster.gcp.yaml"}
POSTGRES_CLUSTERS = list(POSTGRES_TWINS)
HERALD_TOML = "/etc/herald/herald.toml"
INSTALL = "pip install -q ~/herald"
RESOURCES_FILE = "~/.herald-ray-resources.json"


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def _prepared(name: str) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(_load(name)))
    validate_config(config)  # raises on any schema error
    return config


def _setup_commands(config: dict[str, Any], node_type: str) -> list[str]:
    """The setup commands a node of this type runs, as the autoscaler picks them."""
    if node_type == config["head_node_type"]:
        return list(config["head_setup_commands"])
    specific = config["available_node_types"][node_type].get("worker_setup_commands")
    return list(specific if specific is not None else config["worker_setup_commands"])


def _resources_written(commands: list[str]) -> dict[str, Any]:
    """The JSON a node's setup writes for ``ray start --resources``."""
    written = [c for c in commands if RESOURCES_FILE in c and c.startswith("echo ")]
    assert len(written) == 1, commands
    found = re.match(r"echo '(.*)' > ", written[0])
    assert found, written[0]
    return dict(json.loads(found.group(1)))


@pytest.mark.parametrize("name", CLUSTERS)
def test_cluster_config_passes_rays_validation(name: str) -> None:
    config = _prepared(name)
    assert set(config["available_node_types"]) == {"head", "queue", "delivery"}
    assert config["head_node_type"] == "head"


@pytest.mark.parametrize("name", CLUSTERS)
def test_only_queue_nodes_offer_the_resource_the_shards_ask_for(name: str) -> None:
    config = _prepared(name)
    types = config["available_node_types"]
    assert types["queue"]["resources"][QUEUE_RESOURCE] == 1
    assert [t for t, spec in types.items() if QUEUE_RESOURCE in spec["resources"]] == ["queue"]
    # Shard files are found by path on one disk: exactly one queue node, never scaled.
    assert types["queue"]["min_workers"] == types["queue"]["max_workers"] == 1
    # Delivery workers autoscale from zero.
    assert types["delivery"]["min_workers"] == 0 < types["delivery"]["max_workers"]
    # What `ray start --resources` reads on each worker agrees with the node type.
    start = " ".join(config["worker_start_ray_commands"])
    assert f'--resources="$(cat {RESOURCES_FILE})"' in start
    assert _resources_written(_setup_commands(config, "queue")) == {QUEUE_RESOURCE: 1}
    assert _resources_written(_setup_commands(config, "delivery")) == {}
    # The dashboard (job submission, serve deploy) stays on the head's loopback.
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


@pytest.mark.parametrize("name", CLUSTERS)
def test_every_node_installs_herald_from_the_mounted_checkout(name: str) -> None:
    config = _prepared(name)
    assert config["file_mounts"] == {"~/herald": "."}
    assert ".venv" in config["rsync_exclude"]
    data_dir = _serve_env()["HERALD_DATA_DIR"]
    for node_type in config["available_node_types"]:
        commands = _setup_commands(config, node_type)
        assert any(INSTALL in command for command in commands), (node_type, commands)
        assert any("/etc/herald/herald.toml" in command for command in commands), node_type
    # The queue node mounts its persistent disk where the Serve config puts the data dir.
    queue = " ".join(_setup_commands(config, "queue"))
    assert f"LABEL=herald {data_dir} ext4" in queue and f"mount {data_dir}" in queue


def test_the_disks_outlive_their_instance() -> None:
    aws = _load("cluster.yaml")["available_node_types"]["queue"]["node_config"]
    data = [m for m in aws["BlockDeviceMappings"] if m["DeviceName"] != "/dev/sda1"]
    assert data and data[0]["Ebs"]["DeleteOnTermination"] is False
    gcp = _load("cluster.gcp.yaml")["available_node_types"]["queue"]["node_config"]
    disk = next(d for d in gcp["disks"] if d.get("deviceName") == "herald-data")
    assert disk["autoDelete"] is False


# ---- the PostgreSQL variants ------------------------------------------------------------------

@pytest.mark.parametrize("name", POSTGRES_CLUSTERS)
def test_postgres_cluster_config_passes_rays_validation(name: str) -> None:
    config = _prepared(name)
    assert set(config["available_node_types"]) == {"head", "worker"}
    assert config["head_node_type"] == "head"


@pytest.mark.parametrize("name", POSTGRES_CLUSTERS)
def test_postgres_clusters_have_no_queue_node_and_no_data_disk(name: str) -> None:
    config = _prepared(name)
    types = config["available_node_types"]
    # No node offers herald_queue, neither declared nor passed to `ray start`: queue_placement
    # then puts the shards anywhere, and none waits for a node of its own.
    assert not [t for t, spec in types.items() if QUEUE_RESOURCE in spec["resources"]]
    every_command = json.dumps(config)
    assert QUEUE_RESOURCE not in every_command and RESOURCES_FILE not in every_command
    assert "--resources" not in " ".join(config["worker_start_ray_commands"])
    # Nothing on a node must outlive it: no volume kept after its instance, nothing mounted.
    assert "DeleteOnTermination" not in every_command and '"autoDelete": false' not in every_command
    assert "fstab" not in every_command
    assert types["worker"]["min_workers"] == 0 < types["worker"]["max_workers"]
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


@pytest.mark.parametrize("name", POSTGRES_CLUSTERS)
def test_postgres_clusters_match_their_sqlite_twin_where_they_should(name: str) -> None:
    pg, sqlite = _load(name), _load(POSTGRES_TWINS[name])
    assert pg["provider"]["type"] == sqlite["provider"]["type"]
    assert pg["provider"]["region"] == sqlite["provider"]["region"]
    assert pg["cluster_name"] != sqlite["cluster_name"]  # both may run in one region
    for key in ("auth", "file_mounts", "rsync_exclude", "head_start_ray_commands"):
        assert pg[key] == sqlite[key], key
    heads = pg["available_node_types"]["head"], sqlite["available_node_types"]["head"]
    assert heads[0] == heads[1]


@pytest.mark.parametrize("name", POSTGRES_CLUSTERS)
def test_every_postgres_node_installs_herald_and_insists_on_a_database_url(
        name: str, tmp_path: Path) -> None:
    config = _prepared(name)
    checks = set()
    for node_type in config["available_node_types"]:
        commands = _setup_commands(config, node_type)
        assert any(INSTALL in command for command in commands), (node_type, commands)
        assert any(HERALD_TOML in command and "install -m 600" in command
                   for command in commands), node_type
        checks |= {c for c in commands if "database_url" in c}
    (check,) = checks  # one command, the same on every node
    # Run it as `ray up` would, against herald.toml files with and without the URL.
    toml = tmp_path / "herald.toml"
    toml.write_text('public_url = "https://eu.herald.example.com"\n'
                    '# database_url = "postgresql://commented/out"\n')
    refused = subprocess.run(["bash", "-c", check.replace(HERALD_TOML, str(toml))],
                             capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "no database_url in herald.toml" in refused.stderr
    toml.write_text('database_url = "postgresql://herald:pw@db-a:5432,db-b:5432/herald'
                    '?target_session_attrs=read-write"\n')
    accepted = subprocess.run(["bash", "-c", check.replace(HERALD_TOML, str(toml))],
                              capture_output=True, text=True, check=False)
    assert accepted.returncode == 0, accepted.stderr
    # The key the nodes insist on is the setting Herald reads from that file.
    settings = load_settings({"HERALD_CONFIG": str(toml)})
    assert settings.database_url and settings.database_url.startswith("postgresql://herald:pw@")


# ---- serve_config.yaml ------------------------------------------------------------------------

def _serve_config() -> dict[str, Any]:
    return _load("serve_config.yaml")


def _serve_env() -> dict[str, str]:
    return dict(_serve_config()["applications"][0]["runtime_env"]["env_vars"])


def test_serve_config_passes_serves_validation() -> None:
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(_serve_config())
    (app,) = schema.applications
    assert app.name == APP_NAME and app.route_prefix == "/"


def test_serve_config_import_path_is_the_builder() -> None:
    from ray._common.utils import import_attr

    app = _serve_config()["applications"][0]
    assert import_attr(app["import_path"]) is builder.build_app


def test_serve_config_env_is_valid_herald_configuration(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    config = _serve_config()
    env = _serve_env()
    assert all(isinstance(value, str) for value in env.values())  # runtime_env wants strings
    for name in env:
        assert name.removeprefix("HERALD_").lower() in Settings.model_fields, name
    monkeypatch.chdir(tmp_path)  # no herald.toml of the checkout
    for name in list(os.environ):
        if name.startswith("HERALD_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings, options = builder.settings_for_serve(config["applications"][0].get("args"))
    assert settings.data_dir.is_absolute()
    assert (settings.host, settings.port) == (config["http_options"]["host"],
                                              config["http_options"]["port"])
    assert options["queue_nodes"] in ("auto", "required")


def test_serve_builder_refuses_a_relative_data_dir_and_unknown_args(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HERALD_DATA_DIR", "relative/dir")
    with pytest.raises(ConfigError, match="HERALD_DATA_DIR: must be an absolute path"):
        builder.settings_for_serve({})
    monkeypatch.setenv("HERALD_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="unknown argument 'shard'"):
        builder.settings_for_serve({"shard": 3})
    with pytest.raises(ConfigError, match="queue_nodes must be auto or required"):
        builder.settings_for_serve({"queue_nodes": "yes"})


def test_prepare_data_dir_keeps_what_herald_up_keeps(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", shards=2)
    first, dev_key = prepare_data_dir(settings)
    again, same_key = prepare_data_dir(settings)
    assert dev_key and dev_key == same_key and first.api_keys == {dev_key: "dev"}
    assert first.browser_secret and first.browser_secret == again.browser_secret
    assert json.loads((tmp_path / "data" / "queue" / "layout.json").read_text()) == {"shards": 2}
    with pytest.raises(ConfigError, match="HERALD_SHARDS"):
        prepare_data_dir(Settings(data_dir=tmp_path / "data", shards=3))
    keyed, none = prepare_data_dir(Settings(data_dir=tmp_path / "data", shards=2,
                                    api_keys={"k" * 24: "acme"}))
    assert none is None and keyed.api_keys == {"k" * 24: "acme"}


# ---- placement and ports -----------------------------------------------------------------------

def test_shards_ask_for_the_queue_resource_only_where_it_exists(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(members.ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert queue_placement(Settings()) == {}
    monkeypatch.setattr(members.ray, "cluster_resources",
                        lambda: {"CPU": 4.0, QUEUE_RESOURCE: 1.0})
    # With PostgreSQL a shard keeps nothing on its node: anywhere, queue nodes or not.
    assert queue_placement(Settings(database_url="postgresql://h/db")) == {}
    placement = queue_placement(Settings())
    assert set(placement["resources"]) == {QUEUE_RESOURCE}
    # A sliver: a thousand shards fit on the one queue node.
    assert 0 < placement["resources"][QUEUE_RESOURCE] * 1000 <= 1


def test_a_busy_dashboard_port_is_named_before_ray_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        http, browser = _free_port_pair()
        settings = load_settings({"HERALD_DASHBOARD_PORT": str(port), "HERALD_PORT": str(http),
                                  "HERALD_BROWSER_PORT": str(browser)})
        with pytest.raises(OSError, match=rf"127.0.0.1:{port} \(HERALD_DASHBOARD_PORT\)"):
            check_ports_free(settings)
        check_ports_free(settings.with_overrides(dashboard_port=0))  # 0: no dashboard


def _free_port_pair() -> tuple[int, int]:
    with socket.socket() as one, socket.socket() as two:
        one.bind(("127.0.0.1", 0))
        two.bind(("127.0.0.1", 0))
        return one.getsockname()[1], two.getsockname()[1]
