"""VERP return paths: made from a tag, read back to exactly that tag, nothing else accepted."""

from __future__ import annotations

import pytest

from herald.return_path import bounce_address, is_tag, tag_from_address
from herald.sharding import make_tag

DOMAIN = "bounces.example.org"


@pytest.mark.parametrize("shard", [0, 1, 3, 65535])
def test_a_tag_round_trips(shard: int) -> None:
    tag = make_tag(shard)
    address = bounce_address(tag, DOMAIN)
    assert address == f"bounce+{tag}@{DOMAIN}"
    assert tag_from_address(address, DOMAIN) == tag


def test_the_domain_is_matched_in_any_case_and_angle_brackets_are_allowed() -> None:
    tag = make_tag(2)
    assert tag_from_address(f"<bounce+{tag}@Bounces.EXAMPLE.org>", DOMAIN) == tag
    assert tag_from_address(f" bounce+{tag}@{DOMAIN} ", DOMAIN.upper()) == tag


@pytest.mark.parametrize("address", [
    "",
    "<>",
    "bob@example.com",
    "bounce+{tag}@other.example.org",
    "bounce+{tag}@sub.bounces.example.org",
    "bounce-{tag}@bounces.example.org",
    "bounces+{tag}@bounces.example.org",
    "xbounce+{tag}@bounces.example.org",
    "bounce+@bounces.example.org",
    "bounce+{tag}x@bounces.example.org",
    "bounce+{upper}@bounces.example.org",
    "bounce+{tag}\r\nRCPT TO:<evil@example.com>@bounces.example.org",
    "bounce+{tag}%evil@bounces.example.org",
    "bounce+../../{tag}@bounces.example.org",
    "bounce+00000000-0000-0000-0000-000000000000@bounces.example.org",  # not version 4
    "bounce+{tag}@bounces.example.org@bounces.example.org",
    "bounce+{tag}",
])
def test_anything_else_is_not_a_return_path(address: str) -> None:
    tag = make_tag(1)
    assert tag_from_address(address.format(tag=tag, upper=tag.upper()), DOMAIN) is None


def test_an_empty_domain_matches_nothing() -> None:
    assert tag_from_address(f"bounce+{make_tag(0)}@", "") is None


@pytest.mark.parametrize("tag", ["tag-1", "", "{tag}\n", "{tag} ", "{upper}"])
def test_a_return_path_is_made_only_for_a_herald_tag(tag: str) -> None:
    real = make_tag(0)
    tag = tag.format(tag=real, upper=real.upper())
    assert not is_tag(tag)
    with pytest.raises(ValueError):
        bounce_address(tag, DOMAIN)


@pytest.mark.parametrize("domain", ["", "bad domain", "a..b", "-x.org", "x.org\r\n", "ex@mple.org"])
def test_a_return_path_is_made_only_for_a_domain_name(domain: str) -> None:
    with pytest.raises(ValueError):
        bounce_address(make_tag(0), domain)
