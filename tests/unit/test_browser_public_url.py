"""Where a browser gateway says browsers connect: its bind address, its node's IP, or the
``HERALD_BROWSER_PUBLIC_URL`` template filled in per gateway."""

from __future__ import annotations

import pytest

from actors.providers.websocket_browser import WebSocketGateway, advertised_url
from herald.config import load_settings
from herald.errors import ConfigError

SECRET = b"browser-secret-" + b"x" * 17


def test_a_gateway_bound_to_one_address_advertises_that_address() -> None:
    assert advertised_url("127.0.0.1", 8001, "10.0.0.7", None) == "ws://127.0.0.1:8001/ws"
    assert advertised_url("::1", 8001, "10.0.0.7", None) == "ws://[::1]:8001/ws"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_a_gateway_bound_to_every_interface_advertises_its_nodes_ip(host: str) -> None:
    assert advertised_url(host, 8002, "10.0.0.7", None) == "ws://10.0.0.7:8002/ws"
    assert advertised_url(host, 8002, "fd00::7", None) == "ws://[fd00::7]:8002/ws"
    assert advertised_url(host, 8002, None, None) == "ws://127.0.0.1:8002/ws"  # outside Ray


def test_the_public_url_template_is_filled_in_per_gateway() -> None:
    template = "wss://gw.example.com/{node_ip}/{port}/ws"
    assert advertised_url("0.0.0.0", 8003, "10.0.0.7", template) == \
        "wss://gw.example.com/10.0.0.7/8003/ws"
    assert advertised_url("0.0.0.0", 8003, "10.0.0.7", "wss://gw.example.com:{port}/ws") == \
        "wss://gw.example.com:8003/ws"
    # A gateway bound to one address and made outside Ray: that address is its node's.
    assert advertised_url("127.0.0.1", 8003, None, template) == \
        "wss://gw.example.com/127.0.0.1/8003/ws"


async def test_a_started_gateway_knows_its_endpoint() -> None:
    gateway = WebSocketGateway("127.0.0.1", 0, SECRET, node_ip="10.0.0.7")
    assert gateway.endpoint is None
    await gateway.start()
    try:
        assert gateway.endpoint == f"ws://127.0.0.1:{gateway.port}/ws"
    finally:
        await gateway.close()


def test_the_setting_is_read_and_checked() -> None:
    assert load_settings({}).browser_public_url is None
    template = "wss://gw.example.com/{node_ip}/{port}/ws"
    assert load_settings({"HERALD_BROWSER_PUBLIC_URL": template}).browser_public_url == template


@pytest.mark.parametrize(("value", "problem"), [
    ("https://gw.example.com/{port}", "must be a ws:// or wss:// URL with a host"),
    ("ws:///{port}", "must be a ws:// or wss:// URL with a host"),
    ("wss://gw.example.com/{node}/ws", "may use only the placeholders {node_ip} and {port}"),
    ("wss://gw.example.com/{port}/ws?x=1", "must have no query or fragment"),
    ("wss://gw.example.com:99999/ws", "must have a port from 1 to 65535"),
])
def test_a_bad_template_is_named(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"^HERALD_BROWSER_PUBLIC_URL: ") as caught:
        load_settings({"HERALD_BROWSER_PUBLIC_URL": value})
    assert problem in str(caught.value)
