"""AwaitingAcks: browser sends awaiting their ack, found by user and tag, expired by deadline."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from herald.browser_acks import AwaitingAcks, Waiting

T0 = 1_000.0


def written(book: AwaitingAcks[str, str], user: str, tag: str, now: float) -> None:
    """A send of ``tag`` to ``user``, its frame written at ``now``."""
    book.start_clock(book.expect(user, tag, f"{user}:{tag}"), now)


def test_an_ack_settles_only_its_own_users_sends_of_that_tag() -> None:
    book: AwaitingAcks[str, str] = AwaitingAcks(10.0)
    written(book, "alice", "t-1", T0)
    written(book, "mallory", "t-2", T0)
    assert book.ack("mallory", "t-1") == []  # nobody acks another user's tag
    assert book.ack("alice", "t-9") == []
    assert len(book) == 2
    assert book.ack("alice", "t-1") == ["alice:t-1"]
    assert book.ack("alice", "t-1") == []  # once
    assert len(book) == 1


def test_an_ack_before_the_write_is_done_counts() -> None:
    book: AwaitingAcks[str, str] = AwaitingAcks(10.0)
    waiting = book.expect("alice", "t-1", "first")
    assert book.ack("alice", "t-1") == ["first"]
    book.start_clock(waiting, T0)  # the writer finishes after the ack: nothing left to time
    assert book.next_deadline() is None and len(book) == 0


def test_a_tag_sent_twice_is_settled_by_one_ack() -> None:
    book: AwaitingAcks[str, str] = AwaitingAcks(10.0)
    book.start_clock(book.expect("alice", "t-1", "first"), T0)
    book.start_clock(book.expect("alice", "t-1", "second"), T0 + 1)
    assert book.ack("alice", "t-1") == ["first", "second"]
    assert len(book) == 0 and book.next_deadline() is None


def test_dropping_a_user_settles_everything_they_had_not_acked() -> None:
    book: AwaitingAcks[str, str] = AwaitingAcks(10.0)
    written(book, "alice", "t-1", T0)
    book.expect("alice", "t-2", "alice:t-2")  # not written yet
    written(book, "bob", "t-3", T0)
    assert sorted(book.drop("alice")) == ["alice:t-1", "alice:t-2"]
    assert book.drop("alice") == [] and book.ack("alice", "t-1") == []
    assert len(book) == 1


def test_sends_expire_oldest_first_once_written() -> None:
    book: AwaitingAcks[str, str] = AwaitingAcks(10.0)
    written(book, "alice", "t-1", T0)
    written(book, "bob", "t-2", T0 + 1)
    unwritten = book.expect("alice", "t-4", "alice:t-4")
    written(book, "alice", "t-3", T0 + 2)
    assert book.next_deadline() == T0 + 10
    assert book.expire(T0 + 9.9) == []
    book.ack("bob", "t-2")
    assert book.expire(T0 + 11.5) == ["alice:t-1"]  # t-2 was acked: never expires
    assert book.next_deadline() == T0 + 12
    assert book.expire(T0 + 60) == ["alice:t-3"]  # t-4's clock has not started
    assert len(book) == 1 and book.next_deadline() is None
    book.start_clock(unwritten, T0 + 61)
    assert book.expire(T0 + 71) == ["alice:t-4"]
    assert book.ack("alice", "t-3") == [] and len(book) == 0


def test_a_withdrawn_send_leaves_the_others_of_its_tag() -> None:
    book: AwaitingAcks[str, object] = AwaitingAcks(10.0)
    first, second = object(), object()
    withdrawn = book.expect("alice", "t-1", first)
    book.start_clock(book.expect("alice", "t-1", second), T0)
    book.withdraw(withdrawn)
    book.withdraw(withdrawn)  # already gone: nothing
    assert len(book) == 1
    assert book.ack("alice", "t-1") == [second]
    assert book.expire(T0 + 60) == []


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ack_timeout"):
        AwaitingAcks(0.0)


USERS = ("alice", "bob")
TAGS = ("t-1", "t-2", "t-3")


class AwaitingAcksMachine(RuleBasedStateMachine):
    """Random expects, writes, acks, drops, withdrawals and clock steps against a plain list:
    every ticket leaves exactly once, the way the model says, never by another user's ack, and
    never expires before its frame is written."""

    def __init__(self) -> None:
        super().__init__()
        self.book: AwaitingAcks[str, int] = AwaitingAcks(5.0)
        self.now = T0
        self.tickets = itertools.count()
        #: ticket → (user, tag, handle, deadline or None) of each send still waiting.
        self.waiting: dict[int, tuple[str, str, Waiting[str, int], float | None]] = {}
        self.written: list[int] = []  # tickets in the order their clocks started

    def _leave(self, tickets: list[int]) -> None:
        for ticket in tickets:
            del self.waiting[ticket]

    @rule(user=st.sampled_from(USERS), tag=st.sampled_from(TAGS))
    def expect(self, user: str, tag: str) -> None:
        ticket = next(self.tickets)
        self.waiting[ticket] = (user, tag, self.book.expect(user, tag, ticket), None)

    @rule(data=st.data())
    def write(self, data: st.DataObject) -> None:
        unwritten = sorted(t for t, w in self.waiting.items() if w[3] is None)
        if unwritten:
            ticket = data.draw(st.sampled_from(unwritten))
            user, tag, handle, _ = self.waiting[ticket]
            self.book.start_clock(handle, self.now)
            self.waiting[ticket] = (user, tag, handle, self.now + 5.0)
            self.written.append(ticket)

    @rule(user=st.sampled_from(USERS), tag=st.sampled_from(TAGS))
    def ack(self, user: str, tag: str) -> None:
        expected = [t for t, w in self.waiting.items() if w[0] == user and w[1] == tag]
        assert self.book.ack(user, tag) == expected
        self._leave(expected)

    @rule(user=st.sampled_from(USERS))
    def drop(self, user: str) -> None:
        expected = sorted(t for t, w in self.waiting.items() if w[0] == user)
        assert sorted(self.book.drop(user)) == expected
        self._leave(expected)

    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        if self.waiting:
            ticket = data.draw(st.sampled_from(sorted(self.waiting)))
            self.book.withdraw(self.waiting[ticket][2])
            self._leave([ticket])

    @rule(seconds=st.floats(0.0, 4.0))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.written if t in self.waiting
               and (deadline := self.waiting[t][3]) is not None and deadline <= self.now]
        assert self.book.expire(self.now) == due
        self._leave(due)

    @invariant()
    def counts_and_deadline_agree(self) -> None:
        assert len(self.book) == len(self.waiting)
        deadlines = [w[3] for w in self.waiting.values() if w[3] is not None]
        assert self.book.next_deadline() == (min(deadlines) if deadlines else None)


TestAwaitingAcksMachine = AwaitingAcksMachine.TestCase
TestAwaitingAcksMachine.settings = settings(max_examples=200, stateful_step_count=40,
                                            deadline=None)
