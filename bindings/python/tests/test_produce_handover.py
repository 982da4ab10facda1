"""produce() holds records and hands them to the library many at a time (kofka_produce_lease +
kofka_produce_packed): nothing about what users see may change. Each test counts records lost,
duplicated and out of order, or checks the exact error, against the per-record path (a record
with headers or a timestamp still goes alone through kofka_produce)."""

from __future__ import annotations

import gc
import threading
import time

import pytest

import kofka
from conftest import by_partition, drain, kafka_partition

N = 20_000


def _produce_all(p, topic, records, on_delivery=None):
    """produce() each (key, value, partition) record, serving reports when the queue is full."""
    for k, v, part in records:
        while True:
            try:
                p.produce(topic, v, key=k, partition=part, on_delivery=on_delivery)
                break
            except kofka.QueueFullError:
                p.poll(0.05)


def _read_all(broker, topic, partitions, isolation="read_uncommitted"):
    with broker.consumer(isolation_level=isolation) as c:
        c.assign(topic, list(range(partitions)))
        return drain(c)


def test_20000_keyed_records_across_many_leases_arrive_once_each_in_order_with_every_callback_in_order(broker):
    broker.create_topic("h", partitions=3)
    records = [(b"k%d" % (i % 101), b"%06d" % i, None) for i in range(N)]
    reports = []
    with broker.producer(linger_ms=1) as p:
        _produce_all(p, "h", records, lambda err, md: reports.append((err, md)))
        p.flush(timeout=60)
        assert len(p) == 0
    assert [e for e, _ in reports if e is not None] == []
    assert len(reports) == N
    # callbacks: per partition, offsets 0, 1, 2 ... in callback order (none lost, none twice)
    for part in range(3):
        offs = [md.offset for _, md in reports if md.partition == part]
        assert offs == list(range(len(offs)))
    msgs = _read_all(broker, "h", 3)
    values = [m.value for m in msgs]
    assert len(values) == N and len(set(values)) == N   # none lost, none duplicated
    for part, ms in by_partition(msgs).items():
        idx = [int(m.value) for m in ms]
        assert idx == sorted(idx)                          # none reordered within a partition
        assert all(kafka_partition(m.key, 3) == part for m in ms)


def test_keyed_records_go_to_the_partition_the_per_record_path_chooses(broker):
    broker.create_topic("kp", partitions=7)
    keys = [b"key-%d" % i for i in range(500)] + [b""]
    held, alone = {}, {}
    with broker.producer() as p:
        for k in keys:
            p.produce("kp", b"v", key=k, on_delivery=lambda e, md, k=k: held.__setitem__(k, md.partition))
            # a header sends the record alone, through kofka_produce
            p.produce("kp", b"v", key=k, headers=[("h", b"1")],
                      on_delivery=lambda e, md, k=k: alone.__setitem__(k, md.partition))
        p.flush(timeout=30)
    assert len(held) == len(keys) and held == alone


def test_keyless_records_spread_over_partitions_as_the_per_record_path_does(broker):
    broker.create_topic("sp", partitions=4)
    held, alone = [], []
    with broker.producer() as p:
        for i in range(40):
            p.produce("sp", b"v", on_delivery=lambda e, md, i=i: held.append((i, md.partition)))
        p.flush(timeout=30)
        for i in range(40):
            p.produce("sp", b"v", headers=[("h", b"")], on_delivery=lambda e, md, i=i: alone.append((i, md.partition)))
        p.flush(timeout=30)
    # each path, in produce() order: round robin (the next record, the next partition)
    for reports in (held, alone):
        seq = [part for _, part in sorted(reports)]
        assert len(seq) == 40
        assert all((b - a) % 4 == 1 for a, b in zip(seq, seq[1:]))


def test_values_alone_keyed_null_and_callback_records_mixed_in_one_lease_arrive_exactly_as_produced(broker):
    # Values alone are held without a tuple; a lease that also holds other kinds of records
    # must hand every one over as produced: in order, with its key, value and partition.
    broker.create_topic("mx", partitions=1)
    produced, reports = [], []
    with broker.producer(linger_ms=1000) as p:
        for i in range(3000):
            kind = i % 5
            k = b"k%d" % i if kind == 1 else None
            v = None if kind == 2 else b"v%d" % i
            part = 0 if kind == 3 else None
            cb = (lambda e, md, i=i: reports.append((i, e, md.offset))) if kind == 4 else None
            p.produce("mx", v, key=k, partition=part, on_delivery=cb)
            produced.append((k, v))
        p.flush(timeout=30)
    assert [(i, e) for i, e, _ in reports if e is not None] == []
    assert [(i, off) for i, _, off in reports] == [(i, i) for i in range(4, 3000, 5)]
    msgs = _read_all(broker, "mx", 1)
    assert [(m.key, m.value) for m in msgs] == produced
    assert [m.offset for m in msgs] == list(range(3000))


def test_explicit_partitions_are_kept_and_an_out_of_range_one_raises_at_once(broker):
    broker.create_topic("ep", partitions=3)
    reports = []
    with broker.producer() as p:
        for i in range(3000):
            p.produce("ep", b"%d" % i, partition=i % 3, on_delivery=lambda e, md: reports.append((e, md)))
        with pytest.raises(kofka.UnknownPartitionError) as ei:
            p.produce("ep", b"x", partition=3)
        assert ei.value.code == kofka.UnknownPartitionError(5).code
        with pytest.raises(kofka.InvalidArgError):
            p.produce("ep", b"x", partition=-2)
        p.flush(timeout=30)
    assert len(reports) == 3000 and all(e is None for e, _ in reports)
    msgs = _read_all(broker, "ep", 3)
    assert len(msgs) == 3000
    for part, ms in by_partition(msgs).items():
        idx = [int(m.value) for m in ms]
        assert all(i % 3 == part for i in idx) and idx == sorted(idx) and len(idx) == 1000


@pytest.mark.parametrize("headers", [None, [("h", b"1")]], ids=["held", "alone"])
def test_queue_full_is_raised_at_exactly_the_configured_record(broker, headers):
    broker.create_topic("qf")
    with broker.producer(queue_buffering_max_messages=37, linger_ms=10_000) as p:
        count = 0
        with pytest.raises(kofka.QueueFullError) as ei:
            for i in range(1000):
                p.produce("qf", b"v", headers=headers)
                count += 1
        assert count == 37
        assert ei.value.code == 18 and isinstance(ei.value, BufferError)
        p.flush(timeout=30)
        # every slot came back: exactly 37 again, reservations included
        count = 0
        with pytest.raises(kofka.QueueFullError):
            for i in range(1000):
                p.produce("qf", b"v", headers=headers)
                count += 1
        assert count == 37
        p.flush(timeout=30)
    assert broker.watermarks("qf", 0) == (0, 74)


def test_a_lease_left_unused_when_the_next_record_goes_alone_frees_its_slots(broker):
    broker.create_topic("rel")
    with broker.producer(queue_buffering_max_messages=10, linger_ms=10_000) as p:
        p.produce("rel", b"a")        # takes a lease of 10 slots, holds one record
        # a record with a timestamp goes alone: the lease must give back its 9 unused slots
        for i in range(9):
            p.produce("rel", b"b", timestamp_ms=1_000 + i)
        with pytest.raises(kofka.QueueFullError):
            p.produce("rel", b"c", timestamp_ms=5_000)
        with pytest.raises(kofka.QueueFullError):
            p.produce("rel", b"c")
        p.flush(timeout=30)
    assert broker.watermarks("rel", 0) == (0, 10)


def test_a_record_too_large_raises_the_same_error_at_once_and_one_at_the_limit_passes(storage):
    with kofka.Broker(storage) as b:
        b.create_topic("big", config={"max.message.bytes": 100})
        reports = []
        with b.producer() as p:
            p.produce("big", b"v" * 90, key=b"k" * 10, on_delivery=lambda e, md: reports.append(e))
            with pytest.raises(kofka.MsgTooLargeError) as held:
                p.produce("big", b"v" * 91, key=b"k" * 10)
            with pytest.raises(kofka.MsgTooLargeError) as alone:
                p.produce("big", b"v" * 91, key=b"k" * 10, headers=[])   # [] is no headers: held path too
            assert str(held.value) == str(alone.value)
            p.flush(timeout=30)
        assert reports == [None]
        assert b.watermarks("big", 0) == (0, 1)


def test_records_to_interleaved_topics_keep_their_order_per_topic(broker):
    broker.create_topic("ta")
    broker.create_topic("tb")
    with broker.producer() as p:
        for i in range(3000):
            p.produce("ta" if i % 3 else "tb", b"%d" % i)
        p.flush(timeout=30)
    for topic, want in (("ta", [i for i in range(3000) if i % 3]), ("tb", [i for i in range(3000) if not i % 3])):
        got = [int(m.value) for m in _read_all(broker, topic, 1)]
        assert got == want


def test_held_records_of_a_committed_transaction_are_all_visible_read_committed(broker):
    broker.create_topic("tc", partitions=2)
    reports = []
    with broker.producer(delivery="exactly-once", transactional_id="hc") as p:
        p.init_transactions()
        with p.transaction():
            for i in range(2000):
                p.produce("tc", b"%d" % i, key=b"%d" % (i % 5), on_delivery=lambda e, md: reports.append(e))
        assert reports == [None] * 2000
    got = sorted(int(m.value) for m in _read_all(broker, "tc", 2, "read_committed"))
    assert got == list(range(2000))


def test_held_records_of_an_aborted_transaction_are_never_visible_and_report_as_before(broker):
    broker.create_topic("tx")
    reports = []
    with broker.producer(delivery="exactly-once", transactional_id="ha", linger_ms=10_000) as p:
        p.init_transactions()
        p.begin_transaction()
        for i in range(1500):
            p.produce("tx", b"%d" % i, on_delivery=lambda e, md: reports.append(e))
        p.abort_transaction()
        assert len(reports) == 1500   # every report served inside abort_transaction
        assert all(e is None or isinstance(e, kofka.PurgedError) for e in reports)
        p.begin_transaction()
        p.produce("tx", b"after")
        p.commit_transaction()
    assert [m.value for m in _read_all(broker, "tx", 1, "read_committed")] == [b"after"]


def test_a_transaction_that_becomes_abortable_fails_every_held_record_in_its_report(broker):
    broker.create_topic("ab")
    reports = []
    cfg = {"fault.request.loss.rate": 1.0, "retries": 0}
    with broker.producer(cfg, delivery="exactly-once", transactional_id="hab", linger_ms=0) as p:
        p.init_transactions()
        p.begin_transaction()
        produced, raised = 0, None
        for i in range(5000):
            try:
                p.produce("ab", b"%d" % i, on_delivery=lambda e, md: reports.append(e))
                produced += 1
            except kofka.KofkaError as e:
                raised = e
                break
            if i % 100 == 0:
                p.poll(0)
        p.flush(timeout=30)
        assert p.txn_requires_abort()
        if raised is None:
            # a slow backend had not failed a write before the loop ended: produce now
            try:
                p.produce("ab", b"late", on_delivery=lambda e, md: reports.append(e))
                produced += 1
            except kofka.KofkaError as e:
                raised = e
        assert raised is not None and raised.code == kofka.TimedOutError(10).code   # the error produce gives now
        assert len(reports) == produced                       # every accepted record reported once
        assert all(isinstance(e, kofka.TimedOutError) for e in reports)
        p.abort_transaction()
    assert _read_all(broker, "ab", 1, "read_committed") == []


def test_close_delivers_held_records_and_runs_their_callbacks(broker):
    broker.create_topic("cl")
    reports = []
    p = broker.producer()
    for i in range(300):
        p.produce("cl", b"%d" % i, on_delivery=lambda e, md: reports.append((e, md.offset)))
    p.close(timeout=30)
    assert reports == [(None, i) for i in range(300)]
    assert broker.watermarks("cl", 0) == (0, 300)
    with pytest.raises(kofka.ClosedError):
        p.produce("cl", b"late")


def test_a_collected_producer_hands_its_held_records_over_before_closing(broker):
    broker.create_topic("gc")
    p = broker.producer(linger_ms=0)
    for i in range(100):
        p.produce("gc", b"%d" % i)
    del p
    gc.collect()
    # closed with timeout 0, as before: what was written is in order and nothing twice
    with broker.consumer() as c:
        c.assign("gc", [0])
        got = [int(m.value) for m in drain(c)]
    assert got == list(range(len(got)))


def test_two_threads_producing_at_once_lose_nothing_and_keep_each_threads_order(broker):
    broker.create_topic("mt")
    per_thread = 6000
    errors = []

    def run(tag):
        try:
            _produce_all(p, "mt", [(None, b"%s%05d" % (tag, i), None) for i in range(per_thread)])
        except BaseException as e:   # pragma: no cover - reported below
            errors.append(e)

    with broker.producer() as p:
        threads = [threading.Thread(target=run, args=(t,)) for t in (b"a", b"b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        p.flush(timeout=60)
    assert errors == []
    values = [m.value for m in _read_all(broker, "mt", 1)]
    assert len(values) == 2 * per_thread and len(set(values)) == 2 * per_thread
    for tag in (b"a", b"b"):
        mine = [int(v[1:]) for v in values if v[:1] == tag]
        assert mine == list(range(per_thread))


def test_a_callback_that_produces_from_inside_poll_is_served_in_turn(broker):
    broker.create_topic("re")
    seen = []
    with broker.producer() as p:
        def again(err, md):
            seen.append(md.offset)
            if len(seen) < 50:
                p.produce("re", b"x", on_delivery=again)

        p.produce("re", b"x", on_delivery=again)
        while len(seen) < 50:
            p.poll(1.0)
    assert seen == list(range(50))


def test_close_from_another_thread_while_producing_reports_every_accepted_record_once(broker):
    broker.create_topic("race")
    reports = []
    accepted = []
    stopped = []
    p = broker.producer()
    started = threading.Event()

    def produce():
        i = 0
        try:
            while True:
                try:
                    p.produce("race", b"%d" % i, on_delivery=lambda e, md, i=i: reports.append(i))
                except kofka.QueueFullError:
                    continue
                accepted.append(i)
                i += 1
                if i == 2000:
                    started.set()
        except kofka.ClosedError:
            stopped.append(True)

    t = threading.Thread(target=produce)
    t.start()
    started.wait(30)
    p.close(timeout=30)
    t.join(30)
    assert stopped == [True] and not t.is_alive()
    assert sorted(reports) == accepted   # every accepted record reported once, none twice


def test_poll_0_after_each_produce_keeps_batching_and_every_report_still_arrives(broker):
    """The confluent-kafka idiom produce(); poll(0): poll(0) does not end the lease, and each
    callback still comes from a later poll(0) (the held records go over at linger.ms)."""
    broker.create_topic("idiom")
    got = []
    with broker.producer(linger_ms=5) as p:
        for i in range(2000):
            p.produce("idiom", b"%d" % i, on_delivery=lambda err, md: got.append((err, md.offset)))
            p.poll(0)
        deadline = time.monotonic() + 10
        while len(got) < 2000 and time.monotonic() < deadline:
            p.poll(0)   # never a waiting poll: the hold timer hands the last records over
        assert [e for e, _ in got] == [None] * 2000
        assert [o for _, o in got] == list(range(2000)), "every report once, in order"
