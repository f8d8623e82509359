"""One-click unsubscribe (issue 20, item 3) from outside: the link a real email carries, followed
over HTTP against a running Herald on the session's Ray, as a mailbox provider and a user would."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urljoin

import httpx
import pytest

from herald.unsubscribe_tokens import UNSUBSCRIBE_PATH, mint_token, signing_key
from serve.auth import UNAUTHENTICATED_BODY_LIMIT
from tests.conftest import Service
from tests.support.payloads import email_payload

pytestmark = pytest.mark.ray

ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


def anonymous(service: Service) -> httpx.Client:
    """No API key: the token is the only credential (and no redirect may be followed)."""
    return httpx.Client(base_url=service.base_url, timeout=60.0, follow_redirects=False)


def sent_email(service: Service, uid: str, kind: str = "CM_EMAIL") -> tuple[str, str]:
    """Send one email to ``uid``; its tag and the URL of its List-Unsubscribe header."""
    with service.client() as client:
        payload = email_payload(uid=uid)
        payload["type"] = kind
        tag = client.post("/v1/notifications", json=payload).json()["details"]["tag"]
        status = client.get(f"/v1/notifications/{tag}", params={"wait": 20}).json()
    assert status["status"] == "sent", status
    mail = service.sink.wait_for_tag(tag)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = re.fullmatch(r"<(\S+)>", str(mail["List-Unsubscribe"]))
    assert link is not None, mail["List-Unsubscribe"]
    url = link.group(1)
    public = service.herald.settings.base_url()
    assert url.startswith(public + UNSUBSCRIBE_PATH)
    # Herald's public URL is the test service's own here; otherwise reach it at the service.
    return tag, service.base_url + url.removeprefix(public)


def preferences(service: Service, uid: str) -> dict[str, dict[str, bool]]:
    with service.client() as client:
        answer = client.get(f"/v1/users/{uid}")
    assert answer.status_code == 200, answer.text
    return answer.json()["preferences"]  # type: ignore[no-any-return]


def test_a_one_click_post_to_the_emails_link_turns_its_category_off(service: Service) -> None:
    uid = f"unsub-{uuid.uuid4().hex[:10]}"
    _, url = sent_email(service, uid)

    with anonymous(service) as web:
        page = web.get(url)
        # Following the link (as a mail scanner does) changes nothing.
        assert preferences(service, uid) == {}
        answer = web.post(url, **ONE_CLICK)  # type: ignore[arg-type]
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"unsubscribed": True, "category": "CM", "channel": "email"}
    assert preferences(service, uid) == {"CM": {"email": False}}

    # The page's form makes the very same POST.
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', page.text)
    assert form is not None and urljoin(url, form.group(1)) == url
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in form.group(2)
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "form-action 'self'" in policy
    assert "unsafe-inline" not in policy and "script" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"

    # The next email of that category is never sent; another category still is.
    with service.client() as client:
        tag = client.post("/v1/notifications", json=email_payload(uid=uid)).json()["details"]["tag"]
        status = client.get(f"/v1/notifications/{tag}", params={"wait": 20}).json()
    assert (status["status"], status["reason"]) == ("suppressed", "preference")
    assert service.sink.handler.by_tag[tag] == 0
    sent_email(service, uid, kind="NEWS_EMAIL")


def test_the_pages_button_answers_a_page_and_a_multipart_post_works_too(service: Service) -> None:
    uid = f"unsub-{uuid.uuid4().hex[:10]}"
    _, url = sent_email(service, uid, kind="DIGEST_EMAIL")
    with anonymous(service) as web:
        # A browser submitting the form: an HTML answer, under the same strict policy.
        done = web.post(url, headers={"Accept": "text/html,*/*;q=0.8"},
                        data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and done.headers["content-type"].startswith("text/html")
        assert "DIGEST" in done.text and "default-src 'none'" in done.headers["content-security-policy"]
        # RFC 8058's example body is multipart/form-data; a second unsubscribe changes nothing.
        again = web.post(url, data={"List-Unsubscribe": "One-Click"},
                         files={"x": ("x.txt", b"x", "text/plain")})
        assert again.status_code == 200, again.text
    assert preferences(service, uid) == {"DIGEST": {"email": False}}


def test_forged_altered_or_unknown_tokens_are_404_and_change_nothing(service: Service) -> None:
    uid = f"unsub-{uuid.uuid4().hex[:10]}"
    _, url = sent_email(service, uid)
    token = url.rsplit("/", 1)[1]
    forged = mint_token(signing_key("not-the-deployments-" + "x" * 20), "tenant-a", uid, "CM", 0)
    version, _, signature = token.split(".")
    other_user = mint_token(signing_key("not-the-deployments-" + "x" * 20), "tenant-a", "x", "CM", 0)
    altered = f"{version}.{other_user.split('.')[1]}.{signature}"  # someone else, our signature
    with anonymous(service) as web:
        for bad in (forged, altered, token[:-2], "u1.x.y", "nothing"):
            for method in ("GET", "POST"):
                answer = web.request(method, UNSUBSCRIBE_PATH + bad, **ONE_CLICK)  # type: ignore[arg-type]
                assert answer.status_code == 404, (bad, method, answer.text)
                assert answer.json()["error"]["code"] == "not_found"
    assert preferences(service, uid) == {}


def test_a_wrong_or_oversized_body_is_refused_and_changes_nothing(service: Service) -> None:
    uid = f"unsub-{uuid.uuid4().hex[:10]}"
    _, url = sent_email(service, uid)
    with anonymous(service) as web:
        for body in (b"", b"List-Unsubscribe=Yes", b'{"List-Unsubscribe": "One-Click"}'):
            answer = web.post(url, content=body,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["field"] == "List-Unsubscribe"
        huge = b"List-Unsubscribe=One-Click&pad=" + b"x" * UNAUTHENTICATED_BODY_LIMIT
        answer = web.post(url, content=huge,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 413, answer.text
        chunked = web.post(url, content=iter([huge[:1000], huge[1000:]]),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert chunked.status_code == 413, chunked.text
    assert preferences(service, uid) == {}


def test_a_category_too_long_to_keep_is_a_422_not_a_broken_user(service: Service) -> None:
    """A signed token whose category PUT /v1/users would refuse (over 64 characters) is refused
    the same way: what the shard keeps must load again after a restart."""
    uid = f"unsub-{uuid.uuid4().hex[:10]}"
    secret = service.herald.settings.unsubscribe_secret
    assert secret
    token = mint_token(signing_key(secret), "tenant-a", uid, "C" * 70, 0)
    with anonymous(service) as web:
        page = web.get(UNSUBSCRIBE_PATH + token)
        assert page.status_code == 200 and "C" * 70 in page.text
        answer = web.post(UNSUBSCRIBE_PATH + token, **ONE_CLICK)  # type: ignore[arg-type]
    assert answer.status_code == 422, answer.text
    assert preferences(service, uid) == {}


def test_the_page_escapes_what_the_token_names(service: Service) -> None:
    secret = service.herald.settings.unsubscribe_secret
    assert secret
    token = mint_token(signing_key(secret), "tenant-a", "u", '<script>alert("x")</script>', 0)
    with anonymous(service) as web:
        page = web.get(UNSUBSCRIBE_PATH + token)
    assert page.status_code == 200
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


def test_openapi_describes_both_routes_as_needing_no_key(service: Service) -> None:
    with service.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    route = paths["/v1/unsubscribe/{token}"]
    assert "security" not in route["get"] and "security" not in route["post"]
    assert "application/x-www-form-urlencoded" in route["post"]["requestBody"]["content"]
