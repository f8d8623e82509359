"""Herald's OpenAPI document: request bodies, answers and the Bearer scheme, described once.

The routes read their bodies themselves (to refuse an oversized body while it streams and to
answer every mistake as a 4xx naming the field), so FastAPI cannot infer the bodies from their
signatures. This module adds them to the generated document, so ``/docs`` is usable, a client
can be generated and a schema-driven fuzzer reaches past the first field.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from herald.models import NotificationIn
from herald.recipients import RecipientIn

BEARER = "bearerAuth"
#: Routes that need no key.
PUBLIC = {("/healthz", "get"), ("/static/herald.js", "get"), ("/demo", "get")}
#: Authenticated otherwise: provider receipts by their signature, the browser by its token.
SIGNED = {("/v1/providers/twilio/status", "post"), ("/v1/providers/fax/status", "post"),
          ("/v1/providers/twilio/inbound", "post"),
          ("/v1/browser-endpoint", "get"),  # the browser token in ?token= is the credential
          ("/v1/browser/notifications", "get"), ("/v1/browser/notifications/read", "post"),
          # the signed token in the path is the credential (RFC 8058 one-click unsubscribe)
          ("/v1/unsubscribe/{token}", "get"), ("/v1/unsubscribe/{token}", "post")}


class Batch(BaseModel):
    notifications: list[NotificationIn] = Field(min_length=1, max_length=1000)


class BrowserTokenRequest(BaseModel):
    uid: int | str = Field(description="the user the browser connects as")


class AcceptedDetails(BaseModel):  # not "Details": that is the request's (herald.models)
    tag: str
    pos: int = Field(description="notifications ahead of this one in its lane, this one included")


class AcceptedAnswer(BaseModel):
    details: AcceptedDetails
    duplicate: bool | None = Field(default=None, description="already accepted: nothing queued")


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorAnswer(BaseModel):
    error: ErrorBody


class BatchAnswer(BaseModel):
    results: list[AcceptedAnswer | ErrorAnswer]


class TwilioStatusForm(BaseModel):
    model_config = ConfigDict(extra="allow")
    MessageSid: str
    MessageStatus: str
    ErrorCode: str | None = None


class TwilioInboundForm(BaseModel):
    model_config = ConfigDict(extra="allow")
    From: str = Field(description="the number that texted")
    To: str = Field(description="the sending number it texted")
    Body: str = Field(description="STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT; START, UNSTOP")


class SuppressionIn(BaseModel):
    contact: str = Field(description="an email address or an E.164 number")


class Suppression(BaseModel):
    contact: str
    reason: str = Field(description="bounced, complained, stop or manual")
    at: float
    sender: str | None = Field(default=None, description="a STOP's sending number")


class Suppressions(BaseModel):
    items: list[Suppression]


class UserAnswer(RecipientIn):
    uid: str


class FeedItem(BaseModel):
    tag: str
    type: str
    channel: str
    status: str
    priority: int
    title: str | None
    content: str | None
    created_at: float
    read: bool
    read_at: float | None


class FeedAnswer(BaseModel):
    items: list[FeedItem] = Field(description="newest first")
    unread: int = Field(description="the user's unread items, on every page")
    next: str | None = Field(description="the cursor of the next page; null on the last")


class ReadIn(BaseModel):
    tags: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    all: Literal[True] | None = Field(default=None, description="every item (instead of tags)")


class ReadAnswer(BaseModel):
    read: int = Field(description="items that became read now")
    unread: int


class AdminLogin(BaseModel):
    key: str = Field(description="the admin key (HERALD_ADMIN_KEY)")


class AdminTags(BaseModel):
    tags: list[str] = Field(min_length=1, description="notification tags, of any tenant")


class AdminSuppressionIn(SuppressionIn):
    tenant: str = Field(description="the tenant that sends nothing more to the contact")


class OneClickForm(BaseModel):
    list_unsubscribe: Literal["One-Click"] = Field(alias="List-Unsubscribe")


class FaxEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    data: dict[str, Any] = Field(description="a Telnyx-shaped event: event_type, payload")


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/notifications", "post"): _json_body(NotificationIn),
    ("/v1/notifications/batch", "post"): _json_body(Batch),
    ("/v1/browser-tokens", "post"): _json_body(BrowserTokenRequest),
    ("/v1/providers/twilio/status", "post"): {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": _ref(TwilioStatusForm)}}},
    ("/v1/providers/fax/status", "post"): _json_body(FaxEvent),
    ("/v1/providers/twilio/inbound", "post"): {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": _ref(TwilioInboundForm)}}},
    ("/v1/users/{uid}", "put"): _json_body(RecipientIn),
    ("/v1/suppressions", "post"): _json_body(SuppressionIn),
    ("/v1/users/{uid}/notifications/read", "post"): _json_body(ReadIn),
    ("/v1/browser/notifications/read", "post"): _json_body(ReadIn),
    ("/v1/admin/session", "post"): _json_body(AdminLogin),
    ("/v1/admin/notifications/retry", "post"): _json_body(AdminTags),
    ("/v1/admin/notifications/cancel", "post"): _json_body(AdminTags),
    ("/v1/admin/suppressions", "post"): _json_body(AdminSuppressionIn),
    ("/v1/unsubscribe/{token}", "post"): {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": _ref(OneClickForm)},
        "multipart/form-data": {"schema": _ref(OneClickForm)}}},
}
ANSWERS: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/notifications", "post"): {"202": _ref(AcceptedAnswer), "200": _ref(AcceptedAnswer)},
    ("/v1/notifications/batch", "post"): {"202": _ref(BatchAnswer)},
    ("/v1/users/{uid}", "put"): {"200": _ref(UserAnswer)},
    ("/v1/users/{uid}", "get"): {"200": _ref(UserAnswer)},
    ("/v1/users/{uid}", "delete"): {"200": _ref(UserAnswer)},
    ("/v1/suppressions", "get"): {"200": _ref(Suppressions)},
    ("/v1/suppressions", "post"): {"201": _ref(Suppression)},
    ("/v1/users/{uid}/notifications", "get"): {"200": _ref(FeedAnswer)},
    ("/v1/users/{uid}/notifications/read", "post"): {"200": _ref(ReadAnswer)},
    ("/v1/browser/notifications", "get"): {"200": _ref(FeedAnswer)},
    ("/v1/browser/notifications/read", "post"): {"200": _ref(ReadAnswer)},
}
ERRORS = {"401": "no or wrong key", "404": "not found (or not this tenant's)",
          "409": "not in a state that allows it", "413": "body too large",
          "422": "invalid; `field` names where", "429": "queue full: retry after Retry-After",
          "503": "unavailable: retry after Retry-After"}
MODELS = (NotificationIn, Batch, BrowserTokenRequest, AcceptedAnswer, ErrorAnswer, BatchAnswer,
          TwilioStatusForm, FaxEvent, TwilioInboundForm, RecipientIn, UserAnswer, SuppressionIn,
          Suppression, Suppressions, OneClickForm, FeedItem, FeedAnswer, ReadIn, ReadAnswer,
          AdminLogin, AdminTags, AdminSuppressionIn)


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}",
                                         mode="validation")
        for name, described in [*schema.pop("$defs", {}).items(), (model.__name__, schema)]:
            if schemas.setdefault(name, described) != described:  # two models of one name
                raise TypeError(f"OpenAPI: two different schemas are named {name}")
    return schemas


def describe(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the full document (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, routes=app.routes,
                               description="Notification delivery: email, SMS, fax, browser.")
        components = document.setdefault("components", {})
        components.setdefault("schemas", {}).update(_schemas())
        components["securitySchemes"] = {BEARER: {"type": "http", "scheme": "bearer",
                                                  "description": "an API key of your tenant"}}
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                key = (path, method)
                if key in BODIES:
                    operation["requestBody"] = BODIES[key]
                if key not in PUBLIC and key not in SIGNED:
                    operation["security"] = [{BEARER: []}]
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)  # FastAPI's own shape; ours is ErrorAnswer
                for status, schema in ANSWERS.get(key, {}).items():
                    responses[status] = {"description": "the answer",
                                         "content": {"application/json": {"schema": schema}}}
                if key not in PUBLIC:
                    for status, text in ERRORS.items():
                        responses.setdefault(status, {"description": text, "content": {
                            "application/json": {"schema": _ref(ErrorAnswer)}}})
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
