"""The three delivery modes under a lossy producer link (seeded, so runs repeat).

1,000 records are sent one by one with 20% of requests lost before the write
and 20% of acknowledgements lost after it. What reaches the log shows each
mode's guarantee: at-most-once loses some and duplicates none; at-least-once
loses none and duplicates some; exactly-once loses and duplicates none and
keeps the order.
"""

from __future__ import annotations

from typing import List

import pytest

import kofka
from conftest import drain

N = 1000
FAULTS = {
    "fault.request.loss.rate": 0.2,
    "fault.ack.loss.rate": 0.2,
    "fault.seed": 42,
    "retry.backoff.ms": 0,
}


def _send_all(broker: kofka.Broker, topic: str, mode: str) -> int:
    """Send N records one by one; return how many sends raised (outcome unknown)."""
    failures = 0
    with broker.producer(config=FAULTS, delivery=mode) as p:
        for i in range(N):
            try:
                p.send(topic, str(i).encode())
            except kofka.TimedOutError:
                failures += 1
    return failures


def _read_all(broker: kofka.Broker, topic: str) -> List[int]:
    with broker.consumer(isolation_level="read_uncommitted") as c:
        c.assign(topic, [0])
        return [int(m.value) for m in drain(c)]


def test_at_most_once_loses_some_and_duplicates_none(broker):
    broker.create_topic("amo")
    failures = _send_all(broker, "amo", "at-most-once")
    values = _read_all(broker, "amo")
    lost = N - len(set(values))
    print(f"\nat-most-once: written={len(values)} distinct={len(set(values))} lost={lost} "
          f"duplicates={len(values) - len(set(values))} send errors={failures}")
    assert len(values) == len(set(values)), "at-most-once must never duplicate"
    assert set(values) <= set(range(N))
    assert lost > 0, "with 20% request loss and no retries some records must be lost"
    assert values == sorted(values)


def test_at_least_once_loses_none_and_duplicates_some(broker):
    broker.create_topic("alo")
    failures = _send_all(broker, "alo", "at-least-once")
    values = _read_all(broker, "alo")
    dups = len(values) - len(set(values))
    print(f"\nat-least-once: written={len(values)} distinct={len(set(values))} "
          f"lost={N - len(set(values))} duplicates={dups} send errors={failures}")
    assert failures == 0
    assert set(values) == set(range(N)), "at-least-once must lose nothing"
    assert dups > 0, "with 20% ack loss and retries some records must be duplicated"


def test_exactly_once_loses_none_duplicates_none_and_keeps_order(broker):
    broker.create_topic("eos")
    failures = _send_all(broker, "eos", "exactly-once")
    values = _read_all(broker, "eos")
    print(f"\nexactly-once: written={len(values)} distinct={len(set(values))} "
          f"lost={N - len(set(values))} duplicates={len(values) - len(set(values))} send errors={failures}")
    assert failures == 0
    assert values == list(range(N))
    assert broker.watermarks("eos", 0) == (0, N)
