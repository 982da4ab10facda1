"""produce() + poll()/flush() with delivery callbacks, as in confluent-kafka."""

from __future__ import annotations

import threading
import time

import pytest

import kofka
from conftest import drain

N = 5000


def test_5000_produce_calls_give_5000_reports_with_distinct_offsets_on_the_calling_thread(broker):
    broker.create_topic("async", partitions=1)
    reports = []
    me = threading.get_ident()

    def on_delivery(err, md):
        reports.append((err, md, threading.get_ident()))

    with broker.producer(linger_ms=1) as p:
        for i in range(N):
            while True:
                try:
                    p.produce("async", str(i).encode(), key=b"k", on_delivery=on_delivery)
                    break
                except kofka.QueueFullError:
                    p.poll(0.01)
        p.flush(timeout=30)
        assert len(p) == 0
    assert len(reports) == N
    assert all(err is None for err, _, _ in reports)
    assert {tid for _, _, tid in reports} == {me}
    assert all(md.topic == "async" and md.partition == 0 for _, md, _ in reports)
    offsets = [md.offset for _, md, _ in reports]
    assert sorted(offsets) == list(range(N))
    assert broker.watermarks("async", 0) == (0, N)
    with broker.consumer() as c:
        c.assign("async", [0])
        assert [int(m.value) for m in drain(c)] == list(range(N))


def test_poll_returns_the_number_of_reports_served(broker):
    broker.create_topic("count")
    seen = []
    with broker.producer() as p:
        for i in range(3):
            p.produce("count", b"x", on_delivery=lambda err, md: seen.append(md.offset))
        served = 0
        for _ in range(100):
            served += p.poll(0.1)
            if served == 3:
                break
        assert served == 3
        assert sorted(seen) == [0, 1, 2]
        assert p.poll(0) == 0


def test_records_without_a_callback_are_delivered_too(broker):
    broker.create_topic("nocb")
    with broker.producer() as p:
        for i in range(10):
            p.produce("nocb", b"%d" % i)
        p.flush()
    assert broker.watermarks("nocb", 0) == (0, 10)


def test_an_exception_in_the_callback_is_raised_from_flush(broker):
    broker.create_topic("boom")

    def bad(err, md):
        raise RuntimeError("callback failed")

    p = broker.producer()
    p.produce("boom", b"x", on_delivery=bad)
    with pytest.raises(RuntimeError, match="callback failed"):
        p.flush()
    p.close()


def test_a_successful_report_carries_no_error_and_the_metadata(broker):
    broker.create_topic("small", partitions=1)
    reports = []
    with broker.producer() as p:
        p.produce("small", b"x", partition=0, on_delivery=lambda err, md: reports.append((err, md)))
        p.flush()
    assert reports == [(None, kofka.RecordMetadata("small", 0, 0))]


def test_a_failed_delivery_reports_the_error_to_the_callback(broker):
    broker.create_topic("lossy", partitions=1)
    reports = []
    lossy = {"fault.request.loss.rate": 1.0, "retries": 0, "fault.seed": 1}
    with broker.producer(config=lossy) as p:
        p.produce("lossy", b"x", partition=0, on_delivery=lambda err, md: reports.append((err, md)))
        p.flush()
    assert len(reports) == 1
    err, md = reports[0]
    assert isinstance(err, kofka.TimedOutError)
    assert err.code == 10 and err.name == "KOFKA_ERR_TIMED_OUT"
    assert md.topic == "lossy" and md.partition == 0 and md.offset == -1
    assert broker.watermarks("lossy", 0) == (0, 0)


def test_full_queue_raises_queue_full_until_polled(broker):
    broker.create_topic("full")
    with broker.producer(queue_buffering_max_messages=10) as p:
        for i in range(10):
            p.produce("full", b"%d" % i)
        with pytest.raises(kofka.QueueFullError) as ei:
            p.produce("full", b"overflow")
        assert isinstance(ei.value, BufferError)
        p.flush()
        p.produce("full", b"after")
        p.flush()
    assert broker.watermarks("full", 0) == (0, 11)


# The contracts below are why produce() crosses into the core once per record (issue 14): the
# C API has no asynchronous packed call, and a queue held in Python until poll()/flush() would
# break each of them.


def test_a_produced_record_is_written_without_poll_or_flush(broker):
    # The core's background writer writes it after linger.ms; the producer never calls back in.
    broker.create_topic("nopoll")
    with broker.producer(linger_ms=1) as p:
        p.produce("nopoll", b"v")
        deadline = time.monotonic() + 10
        while broker.watermarks("nopoll", 0) != (0, 1) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert broker.watermarks("nopoll", 0) == (0, 1)
        p.flush()


def test_produce_outside_a_transaction_raises_at_the_call_not_in_a_report(broker):
    broker.create_topic("txstate")
    reports = []
    with broker.producer(delivery="exactly-once", transactional_id="txstate") as p:
        p.init_transactions()
        with pytest.raises(kofka.InvalidStateError):
            p.produce("txstate", b"outside", on_delivery=lambda err, md: reports.append(err))
        assert len(p) == 0
        p.flush()
    assert reports == []
    assert broker.watermarks("txstate", 0) == (0, 0)


@pytest.mark.parametrize("headers", [None, [("h", b"")]], ids=["held", "alone"])
def test_poll_0_in_a_loop_serves_each_report_once_as_soon_as_it_is_ready(broker, headers):
    # poll(0) skips the library while its ready flag reads 0: a report that becomes ready
    # while the program only calls poll(0) must still be served, once, by one of those calls.
    broker.create_topic("rf", partitions=1)
    got = []
    with broker.producer(linger_ms=0) as p:
        for i in range(3):
            p.produce("rf", b"v%d" % i, headers=headers, on_delivery=lambda e, md: got.append((e, md.offset)))
            deadline = time.monotonic() + 10
            served = 0
            while len(got) == i and time.monotonic() < deadline:
                served += p.poll(0)
            assert served == 1 and len(got) == i + 1
            assert p.poll(0) == 0
    assert got == [(None, 0), (None, 1), (None, 2)]
