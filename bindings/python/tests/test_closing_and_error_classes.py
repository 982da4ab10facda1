"""Closing from another thread never crashes; the error classes of the second round.

* A Producer or Consumer closed by one thread while another is inside send / produce /
  poll / flush / poll_batch: the other thread's calls return normally or raise
  ClosedError, never crash, never raise anything else.
* The library answers a stale handle with KOFKA_ERR_CLOSED and a foreign one with
  KOFKA_ERR_INVALID_ARG (checked through the raw C calls).
* BusyError and PurgedError; is_retriable / KofkaError.is_retriable; RetriableError is
  the base of BusyError, TimedOutError and QueueFullError; Producer.txn_requires_abort().
"""
from __future__ import annotations

import ctypes
import sqlite3
import threading
import time

import pytest

import kofka
from kofka import _ffi


def _run_threads(targets, close, settle=0.05):
    """Start `targets` (callables appending to a shared list of unexpected errors), close
    after `settle` seconds, join; return the errors."""
    errors: list = []
    stop = threading.Event()

    def wrap(fn):
        def run():
            try:
                while not stop.is_set():
                    fn()
            except kofka.ClosedError:
                pass
            except BaseException as e:  # anything else is a failure
                errors.append(e)
        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    time.sleep(settle)
    close()
    time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "a thread stayed blocked after close"
    return errors


@pytest.mark.parametrize("settle", [0.0, 0.02, 0.1])
def test_producer_closed_while_other_threads_send_poll_and_flush_raises_closed(broker, settle):
    broker.create_topic("t", partitions=2)
    p = broker.producer(linger_ms=1)
    sent = []

    def flush_briefly():
        try:
            p.flush(0.05)
        except kofka.TimedOutError:
            pass  # records still queued after 50 ms: a flush's normal answer

    errors = _run_threads(
        [
            lambda: sent.append(p.send("t", b"v", key=b"k")),
            lambda: p.produce("t", b"async", on_delivery=lambda err, md: None),
            lambda: p.poll(0.01),
            flush_briefly,
            lambda: p.send_batch("t", [b"a", b"b", (b"k", b"c")]),
        ],
        lambda: p.close(2.0),
        settle,
    )
    assert errors == []
    assert p.closed
    with pytest.raises(kofka.ClosedError):
        p.send("t", b"after")
    p.close()  # a second close is harmless
    lo0, hi0 = broker.watermarks("t", 0)
    lo1, hi1 = broker.watermarks("t", 1)
    assert hi0 + hi1 >= len(sent)


@pytest.mark.parametrize("settle", [0.0, 0.05])
def test_consumer_closed_while_other_threads_poll_raises_closed_or_returns(broker, settle):
    broker.create_topic("t", partitions=2)
    with broker.producer() as p:
        p.send_batch("t", [b"x"] * 50)
    c = broker.consumer(group_id="g")
    c.subscribe(["t"])
    errors = _run_threads(
        [
            lambda: c.poll(0.05),
            lambda: c.poll_batch(0.05, max=7),
            lambda: c.commit(),
            lambda: c.position("t", 0),
        ],
        c.close,
        settle,
    )
    # position() of a partition not (yet) assigned is InvalidStateError: allowed, it is not a crash
    assert [e for e in errors if not isinstance(e, kofka.InvalidStateError)] == []
    assert c.closed
    with pytest.raises(kofka.ClosedError):
        c.poll(0)


def test_consumer_destroyed_while_iterating_ends_the_iteration(broker):
    broker.create_topic("t")
    c = broker.consumer(group_id="g")
    c.subscribe(["t"])
    seen = []
    t = threading.Thread(target=lambda: seen.extend(c))
    t.start()
    time.sleep(0.1)
    c.destroy()
    t.join(5)
    assert not t.is_alive()
    assert seen == []


def test_stale_and_foreign_handles_are_closed_and_invalid_arg_in_the_library(broker):
    p = broker.producer()
    c = broker.consumer()
    ph, ch = p._handle, c._handle
    p.close()
    c.close()
    lib = kofka._lib
    assert lib.kofka_flush(ph, 0) == _ffi.KOFKA_ERR_CLOSED
    assert "closed" in kofka._last_error()
    assert lib.kofka_producer_close(ph, 0) == _ffi.KOFKA_ERR_CLOSED
    assert lib.kofka_producer_poll(ph, 0) == -1
    assert lib.kofka_txn_requires_abort(ph) == 0
    assert lib.kofka_commit(ch) == _ffi.KOFKA_ERR_CLOSED
    assert lib.kofka_consumer_close(ch) == _ffi.KOFKA_ERR_CLOSED
    lib.kofka_consumer_destroy(ch)
    assert "closed" in kofka._last_error()
    # a producer handle where a consumer belongs, and an address the library never returned
    p2 = broker.producer()
    wrong = ctypes.cast(p2._handle, _ffi.ConsumerP)
    assert lib.kofka_commit(wrong) == _ffi.KOFKA_ERR_INVALID_ARG
    assert "producer" in kofka._last_error()
    buf = ctypes.create_string_buffer(64)
    foreign = ctypes.cast(buf, _ffi.ProducerP)
    assert lib.kofka_flush(foreign, 0) == _ffi.KOFKA_ERR_INVALID_ARG
    assert "never returned" in kofka._last_error()
    p2.send("t", b"still works")
    p2.close()


def test_error_classes_busy_purged_and_retriable():
    assert kofka._error_for(19).__class__ is kofka.BusyError
    assert kofka._error_for(20).__class__ is kofka.PurgedError
    assert kofka._error_for(19).name == "KOFKA_ERR_BUSY"
    assert kofka._error_for(20).name == "KOFKA_ERR_PURGED"
    for cls in (kofka.BusyError, kofka.TimedOutError, kofka.QueueFullError):
        assert issubclass(cls, kofka.RetriableError)
    assert issubclass(kofka.TimedOutError, TimeoutError)
    assert issubclass(kofka.QueueFullError, BufferError)
    assert not issubclass(kofka.PurgedError, kofka.RetriableError)
    retriable = {code for code in range(0, 25) if kofka.is_retriable(code)}
    assert retriable == {_ffi.KOFKA_ERR_BUSY, _ffi.KOFKA_ERR_TIMED_OUT, _ffi.KOFKA_ERR_QUEUE_FULL}
    assert kofka._error_for(19).is_retriable
    assert not kofka._error_for(13).is_retriable
    assert not kofka.is_retriable(-1)


def test_create_topic_while_another_connection_holds_the_sqlite_lock_is_busy(tmp_path):
    path = tmp_path / "busy.db"
    with kofka.Broker(f"sqlite:{path}", sqlite_busy_timeout_ms=100) as b:
        b.create_topic("first")
        db = sqlite3.connect(str(path), isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            with pytest.raises(kofka.BusyError) as ei:
                b.create_topic("second")
            assert ei.value.is_retriable
            assert "locked" in ei.value.message
            db.execute("ROLLBACK")
        finally:
            db.close()
        b.create_topic("second")  # the same call, repeated, succeeds
        assert b.topic_partitions("second") == 1


def test_txn_requires_abort_after_the_transaction_timed_out(broker):
    broker.create_topic("t")
    with broker.producer(transactional_id="py-tx-abort", transaction_timeout_ms=200) as p:
        p.init_transactions()
        assert p.txn_requires_abort() is False
        p.begin_transaction()
        p.send("t", b"in time")
        time.sleep(0.5)
        with pytest.raises(kofka.TxnTimedOutError):
            p.send("t", b"too late")
        assert p.txn_requires_abort() is True
        p.abort_transaction()
        assert p.txn_requires_abort() is False
    with pytest.raises(kofka.ClosedError):
        p.txn_requires_abort()


def test_abort_purges_records_queued_by_produce(broker):
    broker.create_topic("t")
    with broker.producer(transactional_id="py-tx-purge", linger_ms=60000, batch_num_messages=100000) as p:
        p.init_transactions()
        results = []
        p.begin_transaction()
        for i in range(10):
            p.produce("t", b"queued", on_delivery=lambda err, md: results.append(err))
        p.abort_transaction()  # reports are served here, on this thread
        assert len(results) == 10
        assert all(isinstance(e, kofka.PurgedError) for e in results), results
    assert broker.watermarks("t", 0) == (0, 0)  # never written
