"""Transactions: visibility, aborts, zombie fencing, offsets in a transaction."""

from __future__ import annotations

import pytest

import kofka
from conftest import drain


def _read(broker, topic, isolation, partitions=(0,)):
    with broker.consumer(isolation_level=isolation) as c:
        c.assign(topic, list(partitions))
        return [(m.offset, m.value) for m in drain(c)]


def test_committed_transaction_becomes_visible_to_read_committed(broker):
    broker.create_topic("tx")
    with broker.producer(delivery="exactly-once", transactional_id="tx-1") as p:
        p.init_transactions()
        p.begin_transaction()
        for v in (b"a", b"b", b"c"):
            p.send("tx", v)
        assert _read(broker, "tx", "read_committed") == []
        assert _read(broker, "tx", "read_uncommitted") == [(0, b"a"), (1, b"b"), (2, b"c")]
        assert broker.watermarks("tx", 0) == (0, 3)
        p.commit_transaction()
    assert _read(broker, "tx", "read_committed") == [(0, b"a"), (1, b"b"), (2, b"c")]


def test_aborted_transaction_is_invisible_to_read_committed_but_seen_by_read_uncommitted(broker):
    broker.create_topic("txa")
    with broker.producer(delivery="exactly-once", transactional_id="tx-a") as p:
        p.init_transactions()
        p.begin_transaction()
        p.send("txa", b"a1")
        p.send("txa", b"a2")
        p.commit_transaction()
        p.begin_transaction()
        p.send("txa", b"b1")
        p.send("txa", b"b2")
        p.abort_transaction()
        p.begin_transaction()
        p.send("txa", b"c1")
        p.commit_transaction()
    # markers take no offsets; aborted records keep theirs
    assert broker.watermarks("txa", 0) == (0, 5)
    assert _read(broker, "txa", "read_committed") == [(0, b"a1"), (1, b"a2"), (4, b"c1")]
    assert _read(broker, "txa", "read_uncommitted") == [(0, b"a1"), (1, b"a2"), (2, b"b1"), (3, b"b2"), (4, b"c1")]


def test_a_zombie_producer_is_fenced_and_its_open_transaction_aborted(broker):
    broker.create_topic("zombie")
    old = broker.producer(delivery="exactly-once", transactional_id="z")
    new = broker.producer(delivery="exactly-once", transactional_id="z")
    try:
        old.init_transactions()
        old.begin_transaction()
        old.send("zombie", b"from-old")
        new.init_transactions()  # bumps the epoch: fences old, aborts its transaction
        with pytest.raises(kofka.ProducerFencedError) as ei:
            old.send("zombie", b"old-again")
            old.commit_transaction()
        assert ei.value.code == 13
        assert ei.value.name == "KOFKA_ERR_PRODUCER_FENCED"
        with pytest.raises(kofka.ProducerFencedError):
            old.commit_transaction()
        with new.transaction():
            new.send("zombie", b"from-new")
    finally:
        old.close()
        new.close()
    assert [v for _, v in _read(broker, "zombie", "read_committed")] == [b"from-new"]


def test_with_transaction_commits_at_the_end_of_the_block(broker):
    broker.create_topic("ctx")
    with broker.producer(delivery="exactly-once", transactional_id="ctx-1") as p:
        p.init_transactions()
        with p.transaction():
            p.send("ctx", b"one")
            p.send("ctx", b"two")
    assert _read(broker, "ctx", "read_committed") == [(0, b"one"), (1, b"two")]


def test_with_transaction_aborts_and_reraises_on_an_exception(broker):
    broker.create_topic("ctxa")
    with broker.producer(delivery="exactly-once", transactional_id="ctx-2") as p:
        p.init_transactions()
        with pytest.raises(ValueError, match="processing failed"):
            with p.transaction():
                p.send("ctxa", b"doomed")
                raise ValueError("processing failed")
        with p.transaction():  # the producer is usable again
            p.send("ctxa", b"kept")
    assert _read(broker, "ctxa", "read_committed") == [(1, b"kept")]
    assert _read(broker, "ctxa", "read_uncommitted") == [(0, b"doomed"), (1, b"kept")]


def test_transaction_calls_in_the_wrong_state_raise_invalid_state(broker):
    broker.create_topic("state")
    with broker.producer() as plain:
        with pytest.raises(kofka.InvalidStateError):
            plain.begin_transaction()
        with pytest.raises(kofka.InvalidStateError):
            plain.init_transactions()
    with broker.producer(delivery="exactly-once", transactional_id="st") as p:
        with pytest.raises(kofka.InvalidStateError):
            p.begin_transaction()  # before init_transactions
        p.init_transactions()
        with pytest.raises(kofka.InvalidStateError):
            p.send("state", b"outside a transaction")
        with pytest.raises(kofka.InvalidStateError):
            p.commit_transaction()
        p.begin_transaction()
        with pytest.raises(kofka.InvalidStateError):
            p.begin_transaction()
        p.abort_transaction()


def test_offsets_sent_to_a_transaction_commit_only_with_it(broker):
    broker.create_topic("in")
    broker.create_topic("out")
    with broker.producer() as p:
        for i in range(6):
            p.send("in", b"%d" % i)
    c = broker.consumer(group_id="etl", delivery="exactly-once")
    tp = broker.producer(delivery="exactly-once", transactional_id="etl-tx")
    try:
        c.subscribe(["in"])
        tp.init_transactions()
        batch = []
        for _ in range(50):
            batch = c.poll_batch(timeout=0.1, max=3)
            if batch:
                break
        assert [m.offset for m in batch] == [0, 1, 2]
        with tp.transaction():
            for m in batch:
                tp.send("out", m.value + b"!")
            tp.send_offsets_to_transaction(c)
        assert c.committed("in", 0) == 3

        batch = c.poll_batch(timeout=1.0, max=3)
        assert [m.offset for m in batch] == [3, 4, 5]
        tp.begin_transaction()
        for m in batch:
            tp.send("out", m.value + b"!")
        tp.send_offsets_to_transaction(c)
        tp.abort_transaction()
        assert c.committed("in", 0) == 3  # discarded with the transaction
        assert c.position("in", 0) == 6   # aborting does not rewind by itself
        c.seek_to_committed()
        assert c.position("in", 0) == 3
        batch = c.poll_batch(timeout=1.0, max=3)
        assert [m.offset for m in batch] == [3, 4, 5]
        with tp.transaction():
            for m in batch:
                tp.send("out", m.value + b"!")
            tp.send_offsets_to_transaction(c)
        assert c.committed("in", 0) == 6
    finally:
        tp.close()
        c.close()
    assert [v for _, v in _read(broker, "out", "read_committed")] == [b"%d!" % i for i in range(6)]
