"""Storage backends written in Python (kofka.register_storage) and the reference DictStorage.

The whole broker suite also runs on "pydict:" (conftest's storage fixture); these tests prove
what is particular to a Python backend: errors raised in callbacks, threads, object lifetimes,
snapshots and the one-writer rule."""

from __future__ import annotations

import gc
import threading
import time

import pytest

import kofka
from kofka import storage as ks
from kofka.storage import DictStorage, StoredRecord
from conftest import drain


class Faulty(DictStorage):
    """DictStorage whose operations raise when asked to."""

    fail = {}   # operation name -> exception to raise

    def begin(self, writable):
        e = Faulty.fail.get("begin")
        if e is not None:
            raise e
        return FaultyTxn(super().begin(writable))


class FaultyTxn:
    def __init__(self, txn):
        self._txn = txn

    def __getattr__(self, name):
        method = getattr(self._txn, name)
        e = Faulty.fail.get(name)
        if e is None:
            return method

        def failing(*args):
            raise e

        return failing


class OpenFails:
    def __init__(self, location, config):
        raise ValueError(f"cannot open {location!r}")

    def begin(self, writable):  # pragma: no cover - never opened
        raise AssertionError

    def close(self):  # pragma: no cover
        pass


class Counting(DictStorage):
    """DictStorage that records which threads begin transactions."""

    threads = set()
    lock = threading.Lock()

    def begin(self, writable):
        with Counting.lock:
            Counting.threads.add(threading.get_ident())
        return super().begin(writable)


def _register_once(scheme, cls):
    if scheme not in ks.registered_schemes():
        kofka.register_storage(scheme, cls)


@pytest.fixture
def faulty(tmp_path):
    _register_once("pyfaulty", Faulty)
    Faulty.fail = {}
    yield "pyfaulty:" + str(tmp_path)
    Faulty.fail = {}


def test_an_exception_in_a_storage_callback_becomes_a_storage_error_with_its_message(faulty):
    with kofka.Broker(faulty) as b:
        b.create_topic("t")
        with b.producer(retries=0) as p:
            p.send("t", b"before")
            Faulty.fail = {"append": RuntimeError("disk on fire")}
            with pytest.raises(kofka.StorageError) as ei:
                p.send("t", b"lost")
            assert "RuntimeError: disk on fire" in ei.value.message
            assert "pyfaulty" in ei.value.message
            Faulty.fail = {}
            # the failed write was rolled back: nothing of it is stored, and the store goes on
            assert b.watermarks("t", 0) == (0, 1)
            p.send("t", b"after")
        with b.consumer() as c:
            c.assign("t", 0)
            assert [m.value for m in drain(c)] == [b"before", b"after"]


def test_errors_from_get_scan_log_state_and_commit_are_storage_errors_too(faulty):
    with kofka.Broker(faulty) as b:
        b.create_topic("fine")
        actions = {
            "get": lambda: b.create_topic("t-get"),
            "commit": lambda: b.create_topic("t-commit"),
            "log_state": lambda: b.watermarks("fine", 0),
            "scan": b.maintain,
        }
        for op, action in actions.items():
            Faulty.fail = {op: OSError(5, f"{op} failed")}
            with pytest.raises(kofka.StorageError) as ei:
                action()
            assert f"OSError: [Errno 5] {op} failed" in ei.value.message, op
        Faulty.fail = {}
        b.create_topic("after")
        assert b.topic_partitions("after") == 1
        b.maintain()


def test_a_busy_error_from_the_backend_keeps_its_code(faulty):
    with kofka.Broker(faulty) as b:
        Faulty.fail = {"begin": kofka.BusyError("locked by someone else")}
        with pytest.raises(kofka.BusyError) as ei:
            b.create_topic("t")
        assert ei.value.is_retriable
        assert "locked by someone else" in ei.value.message
        Faulty.fail = {}
        b.create_topic("t")


def test_an_exception_in_open_fails_the_broker_open_with_its_message(tmp_path):
    _register_once("pyopenfails", OpenFails)
    with pytest.raises(kofka.StorageError) as ei:
        kofka.Broker("pyopenfails:somewhere")
    assert "cannot open 'somewhere'" in ei.value.message


def test_kofka_calls_the_backend_from_several_threads_and_loses_nothing(tmp_path):
    _register_once("pycounting", Counting)
    Counting.threads = set()
    with kofka.Broker("pycounting:" + str(tmp_path), log_retention_check_interval_ms=20) as b:
        b.create_topic("t", partitions=4)
        p = b.producer()
        together = threading.Barrier(4)

        def send():
            together.wait()
            for i in range(30):
                p.send("t", b"%d" % i, key=b"k%d" % i)

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(20):
            p.produce("t", b"async-%d" % i)   # written by the producer's background writer
        p.flush(10)
        p.close()
        time.sleep(0.1)                         # the background cleaner runs too
        with b.consumer() as c:
            c.assign("t", [0, 1, 2, 3])
            msgs = drain(c)
    assert len(msgs) == 4 * 30 + 20
    by_part = {}
    for m in msgs:
        by_part.setdefault(m.partition, []).append(m.offset)
    assert all(offs == list(range(len(offs))) for offs in by_part.values())   # dense, in order
    # the four senders, the consumer's thread, and the library's own threads
    assert len(Counting.threads) >= 6


def test_no_instance_or_transaction_outlives_its_broker(tmp_path):
    gc.collect()
    instances, txns = len(ks._instances), len(ks._txns)
    with kofka.Broker("pydict:" + str(tmp_path)) as b:
        b.create_topic("t")
        with b.producer() as p:
            p.send("t", b"v")
        assert len(ks._instances) == instances + 1
    gc.collect()
    assert (len(ks._instances), len(ks._txns)) == (instances, txns)


def test_brokers_on_one_location_share_a_store_and_a_commit_wakes_the_other(tmp_path):
    where = "pydict:" + str(tmp_path)
    with kofka.Broker(where) as a, kofka.Broker(where) as b:
        a.create_topic("t")
        with b.consumer() as c:
            c.assign("t", 0)
            got = []

            def wait_for_one():
                got.append((c.poll(timeout=10), time.monotonic()))

            waiter = threading.Thread(target=wait_for_one)
            waiter.start()
            time.sleep(0.3)
            with a.producer() as p:
                p.send("t", b"from a")
                sent_at = time.monotonic()
            waiter.join()
    msg, at = got[0]
    assert msg is not None and msg.value == b"from a"
    assert at - sent_at < 1.0   # woken by the commit, not by the 10 s timeout


def test_registering_a_scheme_twice_or_a_built_in_one_or_a_class_without_begin_is_refused():
    _register_once("pytwice", DictStorage)
    with pytest.raises(kofka.InvalidArgError):
        kofka.register_storage("pytwice", DictStorage)
    with pytest.raises(kofka.InvalidArgError):
        kofka.register_storage("memory", DictStorage)
    with pytest.raises(kofka.InvalidArgError):
        kofka.register_storage("Bad Scheme", DictStorage)
    with pytest.raises(TypeError):
        kofka.register_storage("pynobegin", object)


# ---- DictStorage on its own ---------------------------------------------------------------


def _rec(value, offset=0):
    return StoredRecord(offset, 0, 1000, None, value, None)


def test_dict_storage_readers_see_the_snapshot_of_their_begin_while_a_writer_works():
    s = DictStorage("")
    w = s.begin(True)
    w.put(b"k", b"1")
    w.append(0, 0, [_rec(b"a")])
    r1 = s.begin(False)
    assert r1.get(b"k") is None and r1.log_state(0) == (0, 0, 0)
    w.commit()
    r2 = s.begin(False)
    assert r2.get(b"k") == b"1" and r2.log_state(0) == (0, 1, 1)
    w2 = s.begin(True)
    w2.put(b"k", b"2")
    w2.append(0, 0, [_rec(b"b", 1)])
    w2.truncate(0, 1)
    w2.commit()
    # r1 and r2 still see what was committed when they began
    assert r1.get(b"k") is None and list(r1.read(0, 0, 10, 10)) == []
    assert r2.get(b"k") == b"1" and [x.value for x in r2.read(0, 0, 10, 10)] == [b"a"]
    r3 = s.begin(False)
    assert r3.get(b"k") == b"2" and r3.log_state(0) == (1, 2, 1)
    assert [x.value for x in r3.read(0, 0, 10, 10)] == [b"b"]
    for t in (r1, r2, r3):
        t.rollback()


def test_dict_storage_rollback_leaves_nothing_and_the_next_append_reuses_the_offsets():
    s = DictStorage("")
    w = s.begin(True)
    w.append(0, 0, [_rec(b"a"), _rec(b"b", 1)])
    w.put(b"x", b"y")
    w.rollback()
    w = s.begin(True)
    assert w.log_state(0) == (0, 0, 0) and w.get(b"x") is None
    assert w.append(0, 7, [_rec(b"c")]) == 0
    w.commit()
    r = s.begin(False)
    assert [(x.offset, x.txn, x.value) for x in r.read(0, 0, 10, 10)] == [(0, 7, b"c")]


def test_dict_storage_scan_remove_and_high_watermark_rules():
    s = DictStorage("")
    w = s.begin(True)
    for k in (b"b", b"a", b"c/1", b"c/2", b"d"):
        w.put(k, k.upper())
    w.delete(b"d")
    w.delete(b"nothing")
    assert [k for k, _ in w.scan(b"a", b"c/2")] == [b"a", b"b", b"c/1"]
    w.append(3, 0, [_rec(b"%d" % i, i) for i in range(5)])
    w.remove(3, [1, 3, 99])
    assert [x.offset for x in w.read(3, 0, 10, 10)] == [0, 2, 4]
    assert [x.offset for x in w.read(3, 1, 10, 2)] == [2, 4]
    assert w.truncate(3, 100) == 5           # clamped to the high watermark
    assert w.log_state(3) == (5, 5, 0)       # empty, and the high watermark stays
    assert w.truncate(3, 2) == 5             # below the start: nothing changes
    w.commit()


def test_dict_storage_allows_one_writer_and_a_second_one_gives_up_busy():
    s = DictStorage("")
    s.busy_timeout = 0.2
    w = s.begin(True)
    started = time.monotonic()
    with pytest.raises(kofka.BusyError):
        s.begin(True)
    assert time.monotonic() - started >= 0.2
    w.commit()
    s.begin(True).rollback()


def test_dict_storage_wait_for_change_returns_on_a_commit_or_wake_all():
    s = DictStorage("")
    token = s.change_token()
    woke = []

    def wait():
        s.wait_for_change(token, 5.0)
        woke.append(time.monotonic())

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.1)
    w = s.begin(True)
    w.put(b"k", b"v")
    w.commit()
    t.join()
    assert s.change_token() != token and woke
    t = threading.Thread(target=lambda: s.wait_for_change(s.change_token(), 5.0))
    started = time.monotonic()
    t.start()
    time.sleep(0.1)
    s.wake_all()
    t.join()
    assert time.monotonic() - started < 2.0


def test_the_python_dict_storage_passes_the_storage_conformance_suite(tmp_path):
    """Kofka's conformance suite (kofka_storage_conformance, the checks of KofkaStorageTesting)
    against the pure-Python reference backend, through ctypes callbacks from several threads."""
    from kofka.storage import conformance

    failed, lines = conformance("pydict:" + str(tmp_path / "conf"))
    assert failed == 0, "\n".join(lines)
    passed = [line for line in lines if line.startswith("PASS")]
    assert len(passed) >= 18, "\n".join(lines)
    assert any("NulInsideAKey" in line for line in passed)


def test_the_conformance_suite_fails_a_broken_python_backend_and_names_the_check(tmp_path):
    """A backend that loses the empty key fails the key/value check that covers it."""
    from kofka.storage import DictStorage, conformance, register_storage, registered_schemes

    class LosesEmptyKey(DictStorage):
        def begin(self, writable):
            txn = super().begin(writable)
            put = txn.put

            def lossy_put(key, value):
                if key != b"":
                    put(key, value)

            txn.put = lossy_put
            return txn

    if "lossy" not in registered_schemes():
        register_storage("lossy", LosesEmptyKey)
    failed, lines = conformance("lossy:" + str(tmp_path / "lossy"), only="kvPutGetDeleteAndScan")
    assert failed == 1
    assert lines[0].startswith("FAIL  kvPutGetDeleteAndScanInByteOrderOverHalfOpenRanges")
    assert any("empty key" in line for line in lines[1:])


def test_conformance_refuses_a_bad_storage_string_and_an_unknown_check():
    from kofka.storage import conformance

    with pytest.raises(kofka.InvalidArgError):
        conformance("no-colon-here")
    with pytest.raises(kofka.InvalidArgError):
        conformance("memory:", only="no-such-check")
    failed, lines = conformance("memory:", only="offsetsAreDense")
    assert failed == 0 and len(lines) == 1 and lines[0].startswith("PASS  offsetsAreDense")
