"""The admin console's view of the suppression list: every tenant's STOPs told apart from the
tenant's own entries, contacts masked, and ids that address one entry exactly."""

from __future__ import annotations

import pytest

from herald.documents import Documents
from herald.errors import ValidationError
from herald.overview import RateTracker, ShardFigures, build_overview
from herald.suppression_views import TenantList, entry_id, tenant_name
from herald.suppressions import BOUNCED, EVERY_TENANT, MANUAL, STOP, Suppression, SuppressionList
from tests.unit.conftest import T0, TENANT

KEY = "admin-" + "k" * 26
SENDER, OTHER_SENDER = "+15005550006", "+15005550009"


def listing(entries: dict[str, list[Suppression]], tenant: str = TENANT) -> TenantList:
    """What the admin route builds from a shard's two answers."""
    kept = SuppressionList(Documents())
    for owner, items in entries.items():
        for entry in items:
            kept.add(owner, entry, T0)
    return TenantList(KEY, tenant, kept.of(tenant), kept.of(EVERY_TENANT))


def test_every_tenants_stops_are_marked_and_contacts_masked() -> None:
    bounced = Suppression("bob@example.com", BOUNCED, T0)
    stop = Suppression("+14155550100", STOP, T0 + 1, SENDER)
    theirs = Suppression("eve@example.com", MANUAL, T0 + 2)
    rows = listing({TENANT: [bounced], EVERY_TENANT: [stop], "another": [theirs]}).page()["items"]
    assert [(r["contact"], r["reason"], r["sender"], r["every_tenant"]) for r in rows] == [
        ("+1…00", "stop", SENDER, True), ("b…@example.com", "bounced", None, False)]
    assert all("bob" not in str(r) and "4155550100" not in str(r) for r in rows)


def test_an_entry_of_the_tenant_equal_to_a_stop_is_listed_once_in_each_scope() -> None:
    same = Suppression("+14155550100", STOP, T0, SENDER)
    listed = listing({TENANT: [same], EVERY_TENANT: [same]})
    assert sorted(item.scope for item in listed.items) == sorted([TENANT, EVERY_TENANT])
    assert len({item.id for item in listed.items}) == 2


def test_ids_tell_apart_contacts_that_mask_alike_and_need_the_admin_key() -> None:
    one, two = Suppression("bob@example.com", MANUAL, T0), Suppression("bea@example.com", MANUAL, T0)
    listed = listing({TENANT: [one, two]})
    rows = listed.page()["items"]
    assert rows[0]["contact"] == rows[1]["contact"] == "b…@example.com"
    assert rows[0]["id"] != rows[1]["id"]
    for row in rows:
        found = listed.find(row["id"])
        assert found is not None and found.row() == row
    assert listed.find("é" * 22) is None and listed.find("") is None
    assert entry_id(KEY, TENANT, one) != entry_id(KEY + "x", TENANT, one)
    assert entry_id(KEY, TENANT, one) != entry_id(KEY, EVERY_TENANT, one)
    assert "bob" not in entry_id(KEY, TENANT, one)


def test_a_search_by_contact_and_a_limit() -> None:
    entries = [Suppression(f"u{i}@example.com", MANUAL, T0 + i) for i in range(5)]
    listed = listing({TENANT: entries})
    page = listed.page(limit=2)
    assert page["total"] == 5 and len(page["items"]) == 2
    assert page["items"][0]["at"] == T0 + 4  # newest first
    found = listed.page(contact=" U3@Example.com ")
    assert found["total"] == 1 and found["items"][0]["at"] == T0 + 3
    assert listed.own("U3@example.com") is not None and listed.own("nobody@example.com") is None


def test_own_ignores_stops_for_one_sender() -> None:
    stop = Suppression("+14155550100", STOP, T0, OTHER_SENDER)
    assert listing({EVERY_TENANT: [stop]}).own("+14155550100") is None


@pytest.mark.parametrize("raw", ["", "  ", None, 7, "*", "t" * 201])
def test_a_tenant_must_be_named(raw: object) -> None:
    with pytest.raises(ValidationError) as error:
        tenant_name(raw)
    assert error.value.field == "tenant"
    assert tenant_name(" acme ") == "acme"


def test_the_overview_has_rates_of_suppressed_and_bounced() -> None:
    def figures(suppressed: int, bounced: int) -> ShardFigures:
        return ShardFigures(shard=0, depth={}, counters={"accepted": suppressed, "sent": bounced,
                                                         "suppressed": suppressed, "bounced": bounced})

    tracker = RateTracker(window=10)
    tracker.add(T0, [figures(0, 0)])
    tracker.add(T0 + 4, [figures(8, 2)])
    overview = build_overview(T0 + 4, [figures(8, 2)], None, [], tracker)
    assert overview["rates"]["suppressed"] == pytest.approx(2.0)
    assert overview["rates"]["bounced"] == pytest.approx(0.5)
    assert overview["history"][-1]["suppressed"] == pytest.approx(2.0)
    assert (overview["counters"]["suppressed"], overview["counters"]["bounced"]) == (8, 2)
