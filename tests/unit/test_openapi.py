"""The OpenAPI document describes what a client sends to every route that takes a body, and
what the newer routes answer: a route added without its description fails here."""

from __future__ import annotations

from typing import Any

import pytest

from serve.app import app

#: Routes that take no body (the path says it all).
NO_BODY = {("/v1/admin/channels/{channel}/pause", "post"),
           ("/v1/admin/channels/{channel}/resume", "post"),
           ("/v1/notifications/{tag}/retry", "post")}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return app.openapi()


def test_every_route_that_takes_a_body_describes_it(document: dict[str, Any]) -> None:
    missing = [(path, method) for path, operations in document["paths"].items()
               for method, operation in operations.items()
               if method in ("post", "put", "patch") and (path, method) not in NO_BODY
               and "requestBody" not in operation]
    assert not missing


def _schema(document: dict[str, Any], ref: str) -> dict[str, Any]:
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_the_feed_routes_are_described(document: dict[str, Any]) -> None:
    paths = document["paths"]
    answer = paths["/v1/users/{uid}/notifications"]["get"]["responses"]["200"]
    feed = _schema(document, answer["content"]["application/json"]["schema"]["$ref"])
    assert set(feed["properties"]) == {"items", "unread", "next"}
    assert paths["/v1/users/{uid}/notifications"]["get"]["security"] == [{"bearerAuth": []}]
    browser = paths["/v1/browser/notifications/read"]["post"]
    assert "security" not in browser  # the browser token is the credential
    body = browser["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert set(_schema(document, body)["properties"]) == {"tags", "all"}
    details = _schema(document, "#/components/schemas/Details")
    assert {"inbox", "send_at"} <= set(details["properties"])
