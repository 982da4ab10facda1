"""Consumer groups: partition assignment, failure detection, resume points."""

from __future__ import annotations

import time

import pytest

import kofka
from conftest import by_partition

SESSION = {"session.timeout.ms": 500}


def _fill(broker, topic, partitions, per_partition, tag="v"):
    with broker.producer() as p:
        for part in range(partitions):
            for i in range(per_partition):
                p.send(topic, f"{tag}-{part}-{i}".encode(), partition=part)


def test_two_consumers_of_one_group_split_six_partitions_without_overlap(broker):
    broker.create_topic("six", partitions=6)
    _fill(broker, "six", 6, 10)
    c1 = broker.consumer(config=SESSION, group_id="split", max_poll_records=5)
    c2 = broker.consumer(config=SESSION, group_id="split", max_poll_records=5)
    try:
        c1.subscribe(["six"])
        c2.subscribe(["six"])
        got1, got2 = [], []
        deadline = time.monotonic() + 15
        while len(got1) + len(got2) < 60 and time.monotonic() < deadline:
            got1.extend(c1.poll_batch(timeout=0.05))
            got2.extend(c2.poll_batch(timeout=0.05))
        parts1 = set(by_partition(got1))
        parts2 = set(by_partition(got2))
        assert parts1 and parts2
        assert parts1.isdisjoint(parts2)
        assert parts1 | parts2 == set(range(6))
        assert len(got1) + len(got2) == 60
        assert sorted(m.value for m in got1 + got2) == sorted(
            f"v-{p}-{i}".encode() for p in range(6) for i in range(10)
        )

        # c2 dies: after session.timeout.ms the group gives c1 all six partitions
        c2.destroy()
        _fill(broker, "six", 6, 1, tag="new")
        wanted = {f"new-{p}-0".encode() for p in range(6)}
        after = []
        start = time.monotonic()
        deadline = start + 15
        while not wanted <= {m.value for m in after} and time.monotonic() < deadline:
            after.extend(c1.poll_batch(timeout=0.1))
        assert wanted <= {m.value for m in after}
        assert set(by_partition(after)) == set(range(6))
    finally:
        c1.close()
        c2.close()


def test_a_graceful_close_hands_partitions_over_at_once(broker):
    broker.create_topic("handover", partitions=2)
    _fill(broker, "handover", 2, 3)
    c1 = broker.consumer(group_id="ho", session_timeout_ms=60000)
    c2 = broker.consumer(group_id="ho", session_timeout_ms=60000)
    c1.subscribe("handover")
    c2.subscribe("handover")
    c2.close()  # leaves the group: no need to wait for the session timeout
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 6 and time.monotonic() < deadline:
        got.extend(c1.poll_batch(timeout=0.1))
    c1.close()
    assert sorted(m.value for m in got) == sorted(f"v-{p}-{i}".encode() for p in range(2) for i in range(3))


@pytest.mark.parametrize("mode,resume", [("at-most-once", 20), ("at-least-once", 10)])
def test_resume_point_after_a_consumer_dies_while_processing_its_second_batch(broker, mode, resume):
    broker.create_topic("resume", partitions=1)
    _fill(broker, "resume", 1, 100)
    group = "resume-" + mode
    cfg = dict(SESSION, **{"max.poll.records": 10})
    a = broker.consumer(config=cfg, group_id=group, delivery=mode)
    a.subscribe(["resume"])
    first = a.poll_batch(timeout=5.0)
    assert [m.offset for m in first] == list(range(0, 10))
    second = a.poll_batch(timeout=5.0)
    assert [m.offset for m in second] == list(range(10, 20))
    a.destroy()  # dies while "processing" the second batch

    b = broker.consumer(config=cfg, group_id=group, delivery=mode)
    try:
        assert b.committed("resume", 0) == resume
        b.subscribe(["resume"])
        batch = []
        deadline = time.monotonic() + 10
        while not batch and time.monotonic() < deadline:
            batch = b.poll_batch(timeout=0.1)
        assert [m.offset for m in batch] == list(range(resume, resume + 10))
    finally:
        b.close()


def test_subscribe_without_group_id_raises_invalid_state(broker):
    broker.create_topic("nogroup")
    with broker.consumer() as c:
        with pytest.raises(kofka.InvalidStateError):
            c.subscribe(["nogroup"])


def test_subscribe_then_assign_raises_invalid_state(broker):
    broker.create_topic("mix")
    with broker.consumer(group_id="mix") as c:
        c.subscribe(["mix"])
        with pytest.raises(kofka.InvalidStateError):
            c.assign("mix", [0])


@pytest.mark.parametrize("mode", ["at-most-once", "at-least-once"])
def test_poll_batch_counts_every_returned_record_in_position_and_commits(broker, mode):
    # Why Python's poll() cannot serve records from a poll_batch it holds back (issue 14): the
    # core counts what poll_batch returned, so records held in Python would already be in
    # position() and, at-most-once, already committed. The core's own read-ahead
    # (queued.min.messages) is not counted.
    broker.create_topic("counted", partitions=1)
    _fill(broker, "counted", 1, 30)
    c = broker.consumer(config={"max.poll.records": 10}, group_id="counted-" + mode, delivery=mode,
                        auto_offset_reset="earliest")
    try:
        c.assign("counted", 0)
        assert [m.offset for m in c.poll_batch(timeout=5.0)] == list(range(10))
        assert c.position("counted", 0) == 10
        if mode == "at-most-once":
            assert c.committed("counted", 0) == 10
        m = c.poll(timeout=5.0)
        assert m is not None and m.offset == 10
        assert c.position("counted", 0) == 11
        if mode == "at-most-once":
            assert c.committed("counted", 0) == 11
    finally:
        c.close()
