"""Python interceptors (broker.add_interceptor) through ctypes callbacks, on every backend."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

import kofka
from conftest import drain


class Recorder:
    """Records every hook call, thread-safely."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = []
        self.acks = []
        self.consumed = []
        self.commits = []
        self.closes = 0
        self.threads = set()

    def on_send(self, topic, record):
        with self.lock:
            self.sent.append((topic, record))
            self.threads.add(threading.get_ident())

    def on_acknowledgement(self, topic, result):
        with self.lock:
            self.acks.append((topic, result))

    def on_consume(self, message):
        with self.lock:
            self.consumed.append(message)

    def on_commit(self, group, topic, partition, offset, error):
        with self.lock:
            self.commits.append((group, topic, partition, offset, error))

    def on_close(self):
        with self.lock:
            self.closes += 1


def test_an_interceptor_sees_every_send_acknowledgement_consume_commit_and_close(storage):
    rec = Recorder()
    b = kofka.Broker(storage)
    b.add_interceptor(rec)
    b.create_topic("orders", partitions=2)
    with b.producer() as p:
        sent = [p.send("orders", b"one", key=b"k1", headers=[("h", b"x")])]
        sent += p.send_batch("orders", [b"two", b"three"])
        reports = []
        p.produce("orders", b"four", on_delivery=lambda err, md: reports.append(md))
        p.flush(10)
        sent += reports
    with b.consumer(group_id="billing", enable_auto_commit=False) as c:
        c.subscribe("orders")
        msgs = drain(c, idle=0.3)
        c.commit()
    b.close()

    assert len(msgs) == 4
    assert [t for t, _ in rec.sent] == ["orders"] * 4
    first = rec.sent[0][1]
    assert (first.key, first.value, first.headers, first.partition) == (b"k1", b"one", [("h", b"x")], None)
    assert sorted(r.value for _, r in rec.sent) == sorted([b"one", b"two", b"three", b"four"])
    # one acknowledgement per record, carrying where it went
    assert sorted((md.partition, md.offset) for _, md in rec.acks) == sorted((md.partition, md.offset) for md in sent)
    assert all(isinstance(md, kofka.RecordMetadata) for _, md in rec.acks)
    assert sorted((m.partition, m.offset) for m in rec.consumed) == sorted((m.partition, m.offset) for m in msgs)
    assert all(isinstance(m, kofka.Message) for m in rec.consumed)
    # one commit per partition read, at the position after its last record
    last = {}
    for m in msgs:
        last[m.partition] = max(last.get(m.partition, -1), m.offset)
    assert sorted((g, t, part, off, err) for g, t, part, off, err in rec.commits) == sorted(
        ("billing", "orders", part, off + 1, None) for part, off in last.items()
    )
    assert rec.closes == 1


def test_on_send_may_add_a_header_or_replace_the_record_and_consumers_read_what_it_made(storage):
    class Tagger:
        def on_send(self, topic, record):
            if record.value == b"replace me":
                return record._replace(value=b"replaced", key=b"new-key")
            return record.headers + [("tagged-by", b"tagger")]

    with kofka.Broker(storage) as b:
        b.add_interceptor(Tagger())
        b.create_topic("t")
        with b.producer() as p:
            p.send("t", b"plain", headers=[("own", b"1")])
            p.send("t", b"replace me")
            p.send_batch("t", [b"batched"])
        with b.consumer() as c:
            c.assign("t", 0)
            msgs = drain(c)
    assert [m.value for m in msgs] == [b"plain", b"replaced", b"batched"]
    assert msgs[0].headers == [("own", b"1"), ("tagged-by", b"tagger")]
    assert msgs[1].key == b"new-key" and msgs[1].headers == []
    assert msgs[2].headers == [("tagged-by", b"tagger")]


def test_a_failed_delivery_reaches_on_acknowledgement_as_the_error(broker):
    rec = Recorder()
    broker.add_interceptor(rec)
    broker.create_topic("t", partitions=1)
    with broker.producer() as p:
        with pytest.raises(kofka.UnknownPartitionError):
            p.send("t", b"x", partition=7)
    assert len(rec.acks) == 1
    topic, err = rec.acks[0]
    assert topic == "t" and isinstance(err, kofka.UnknownPartitionError)


def test_an_exception_in_a_hook_is_reported_once_per_hook_counted_and_never_fatal(storage, capfd):
    class Broken:
        def on_send(self, topic, record):
            raise ValueError("send hook is broken")

        def on_acknowledgement(self, topic, result):
            raise RuntimeError("ack hook is broken")

        def on_consume(self, message):
            return 1 / 0

        def on_commit(self, group, topic, partition, offset, error):
            raise KeyError("commit")

        def on_close(self):
            raise SystemExit("close hook exits")   # not even SystemExit escapes

    # The error counter is process-wide: handles an earlier test left for the garbage collector
    # (their close hooks may raise) are collected now, not in the middle of this count.
    gc.collect()
    before = kofka.interceptor_errors()
    b = kofka.Broker(storage)
    b.add_interceptor(Broken(), name="broken")
    b.create_topic("t")
    with b.producer() as p:
        mds = [p.send("t", b"%d" % i) for i in range(3)]
    with b.consumer(group_id="g", enable_auto_commit=False) as c:
        c.assign("t", 0)
        msgs = drain(c)
        c.commit()
    b.close()
    # every record went through untouched
    assert [md.offset for md in mds] == [0, 1, 2]
    assert [m.value for m in msgs] == [b"0", b"1", b"2"]
    # 3 sends + 3 acks + 3 consumes + 1 commit + 1 close
    err = capfd.readouterr().err
    assert kofka.interceptor_errors() - before == 11, err
    for hook, text in [("on_send", "send hook is broken"), ("on_acknowledgement", "ack hook is broken"),
                       ("on_consume", "ZeroDivisionError"), ("on_commit", "KeyError"), ("on_close", "close hook exits")]:
        assert err.count(f"'broken' raised in {hook} ") == 1, hook
        assert text in err


def test_on_send_returning_something_else_is_an_error_and_the_record_goes_unchanged(broker):
    class Wrong:
        def on_send(self, topic, record):
            return 42

    before = kofka.interceptor_errors()
    broker.add_interceptor(Wrong())
    broker.create_topic("t")
    with broker.producer() as p:
        p.send("t", b"v", headers=[("h", b"1")])
    with broker.consumer() as c:
        c.assign("t", 0)
        (m,) = drain(c)
    assert (m.value, m.headers) == (b"v", [("h", b"1")])
    assert kofka.interceptor_errors() - before == 1


def test_hooks_run_on_every_sending_thread_and_may_call_kofka(broker):
    class Checking(Recorder):
        def on_acknowledgement(self, topic, result):
            # a hook may call back into the library (the GIL and the library's locks allow it)
            assert broker.topic_partitions(topic) == 3
            super().on_acknowledgement(topic, result)

    rec = Checking()
    before = kofka.interceptor_errors()
    broker.add_interceptor(rec)
    broker.create_topic("t", partitions=3)
    p = broker.producer()
    errors = []
    together = threading.Barrier(4)   # all four alive at once (a finished thread's id may be reused)

    def send_many():
        try:
            together.wait()
            for i in range(25):
                p.send("t", b"%d" % i)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=send_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.close()
    assert errors == []
    assert len(rec.sent) == 100 and len(rec.acks) == 100
    assert all(isinstance(md, kofka.RecordMetadata) for _, md in rec.acks)
    assert len(rec.threads) == 4
    assert kofka.interceptor_errors() == before   # no hook raised (the calls back into kofka worked)


def test_the_broker_keeps_its_interceptors_alive_and_lets_them_go_after(storage):
    calls = []

    class Counter:
        def on_send(self, topic, record):
            calls.append(topic)

    b = kofka.Broker(storage)
    ic = Counter()
    ref = weakref.ref(ic)
    b.add_interceptor(ic)
    del ic
    gc.collect()
    assert ref() is not None
    b.create_topic("t")
    p = b.producer()
    del b   # the producer keeps the broker, and so the interceptor, alive
    gc.collect()
    p.send("t", b"v")
    assert calls == ["t"]
    p.close()
    broker = p.broker
    del p
    broker.close()
    del broker
    gc.collect()
    assert ref() is None


def test_add_interceptor_refuses_a_second_name_an_object_without_hooks_and_a_closed_broker(storage):
    b = kofka.Broker(storage)
    b.add_interceptor(Recorder(), name="rec")
    with pytest.raises(kofka.InvalidArgError):
        b.add_interceptor(Recorder(), name="rec")
    with pytest.raises(TypeError):
        b.add_interceptor(object())
    assert b.add_interceptor(Recorder()).startswith("python:Recorder@")
    b.close()
    with pytest.raises(kofka.ClosedError):
        b.add_interceptor(Recorder())


def test_interceptors_apply_to_producers_and_consumers_opened_afterwards(broker):
    broker.create_topic("t")
    early = broker.producer()
    rec = Recorder()
    broker.add_interceptor(rec)
    late = broker.producer()
    early.send("t", b"early")
    late.send("t", b"late")
    early.close()
    late.close()
    assert [r.value for _, r in rec.sent] == [b"late"]
