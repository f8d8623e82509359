"""Each typed client method calls a method of its actor by the same name, with the same
parameters: a renamed or re-shaped actor method fails here, not in production."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from actors.channels import ChannelActor
from actors.clients import ChannelClient, ShardClient, SupervisorClient
from actors.queue import QueueActor
from actors.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [(ShardClient, QueueActor), (ChannelClient, ChannelActor), (SupervisorClient, Supervisor)]
#: Where a handle's methods may be called directly: the clients themselves.
CLIENT_MODULES = {"actors/clients.py", "actors/ratelimiter.py", "actors/admin_sessions.py"}


def _parameters(function: object) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()  # type: ignore[arg-type]
            if p.name not in ("self", "_ray_trace_ctx")]


def _methods(client: type) -> list[str]:
    return [name for name, value in vars(client).items()
            if callable(value) and not name.startswith("_")]


@pytest.mark.parametrize(("client", "actor"), PAIRS, ids=[c.__name__ for c, _ in PAIRS])
def test_every_client_method_matches_its_actor_method(client: type, actor: object) -> None:
    actor_class = actor.__ray_metadata__.modified_class  # type: ignore[attr-defined]
    assert _methods(client)
    for name in _methods(client):
        target = getattr(actor_class, name, None)
        assert target is not None, f"{actor_class.__name__} has no method {name}"
        expected = _parameters(target)
        if actor is QueueActor:  # a queue process hosts several shards: each call names one
            assert expected[0] == ("shard", inspect.Parameter.empty), name
            expected = expected[1:]
        assert _parameters(getattr(client, name)) == expected, name


def _direct_calls(path: Path) -> list[str]:
    """``x.method.remote(...)``: a call on a handle that bypasses the clients."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "remote" and isinstance(node.func.value, ast.Attribute) \
                and node.func.value.attr != "options":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_actors_are_called_only_through_their_clients() -> None:
    places = [p for d in ("serve", "launcher", "actors", "jobs") for p in (ROOT / d).rglob("*.py")]
    calls = [c for p in places if p.relative_to(ROOT).as_posix() not in CLIENT_MODULES
             for c in _direct_calls(p)]
    assert not calls, f"call actors through actors/clients.py: {calls}"
