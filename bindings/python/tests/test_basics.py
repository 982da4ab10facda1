"""Broker, producer and consumer basics on both backends."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import kofka
from conftest import PACKAGE_ROOT, by_partition, drain, kafka_partition

BASE_TS = 1_700_000_000_000


def test_version_comes_from_the_library():
    assert kofka.__version__ == kofka._lib.kofka_version().decode()
    assert kofka.__version__


def test_round_trip_of_keyed_binary_values_with_headers_and_timestamps(broker):
    broker.create_topic("rt", partitions=3)
    sent = []
    with broker.producer() as p:
        for i in range(30):
            key = bytes([i % 5, 0, 255, 10])  # binary, with NUL bytes
            value = bytes([0, i, 255, 0]) * (i + 1)
            headers = [("trace", bytes([i, 0, 1])), ("empty", b""), ("trace", b"second")]
            md = p.send("rt", value, key=key, timestamp_ms=BASE_TS + i, headers=headers)
            assert md.topic == "rt"
            assert md.partition == kafka_partition(key, 3)
            sent.append((md, key, value, headers))
    # offsets are dense from 0 in every partition, in send order
    for part in range(3):
        offsets = [md.offset for md, *_ in sent if md.partition == part]
        assert offsets == list(range(len(offsets)))
    for part in range(3):
        assert broker.watermarks("rt", part) == (0, sum(1 for md, *_ in sent if md.partition == part))

    with broker.consumer() as c:
        c.assign("rt", [0, 1, 2])
        got = drain(c)
    assert len(got) == 30
    expected = {(md.partition, md.offset): (key, value, BASE_TS + i, headers) for i, (md, key, value, headers) in enumerate(sent)}
    for m in got:
        key, value, ts, headers = expected[(m.partition, m.offset)]
        assert m.topic == "rt"
        assert m.key == key
        assert m.value == value
        assert m.timestamp_ms == ts
        assert list(m.headers) == headers
    for part, msgs in by_partition(got).items():
        assert [m.offset for m in msgs] == list(range(len(msgs)))


def test_absent_key_and_value_come_back_as_none(broker):
    broker.create_topic("nulls")
    with broker.producer() as p:
        md = p.send("nulls", None)
        assert md == kofka.RecordMetadata("nulls", 0, 0)
        p.send("nulls", b"", key=b"")
        p.send("nulls", "text é", key="k")  # str is UTF-8
    with broker.consumer() as c:
        c.assign("nulls", [0])
        got = drain(c)
    assert [(m.key, m.value, list(m.headers)) for m in got] == [
        (None, None, []),
        (b"", b"", []),
        (b"k", "text é".encode(), []),
    ]


def test_same_key_goes_to_the_same_partition(broker):
    broker.create_topic("keys", partitions=8)
    with broker.producer() as p:
        for key in [b"alice", b"bob", b"carol", b"dave", b"21", b"foobar"]:
            parts = {p.send("keys", b"v%d" % i, key=key).partition for i in range(5)}
            assert parts == {kafka_partition(key, 8)}


def test_explicit_partition_is_respected(broker):
    broker.create_topic("explicit", partitions=4)
    with broker.producer() as p:
        assert p.send("explicit", b"x", key=b"whatever", partition=3) == kofka.RecordMetadata("explicit", 3, 0)
        assert p.send("explicit", b"y", partition=3) == kofka.RecordMetadata("explicit", 3, 1)
        with pytest.raises(kofka.UnknownPartitionError):
            p.send("explicit", b"z", partition=7)


def test_watermarks_track_the_next_offset_per_partition(broker):
    broker.create_topic("wm", partitions=2)
    assert broker.watermarks("wm", 0) == (0, 0)
    assert broker.watermarks("wm", 1) == (0, 0)
    with broker.producer() as p:
        for i in range(5):
            p.send("wm", b"%d" % i, partition=1)
    assert broker.watermarks("wm", 0) == (0, 0)
    assert broker.watermarks("wm", 1) == (0, 5)
    with pytest.raises(kofka.UnknownPartitionError):
        broker.watermarks("wm", 2)
    with pytest.raises(kofka.UnknownTopicError):
        broker.watermarks("no-such-topic", 0)


def test_send_batch_crosses_once_and_returns_metadata_in_order(broker):
    broker.create_topic("batch", partitions=2)
    with broker.producer() as p:
        mds = p.send_batch("batch", [b"a", (b"k1", b"b"), (None, b"c"), (b"k1", b"d")])
        assert [md.topic for md in mds] == ["batch"] * 4
        assert mds[1].partition == mds[3].partition == kafka_partition(b"k1", 2)
        assert mds[3].offset > mds[1].offset
        assert p.send_batch("batch", []) == []
    with broker.consumer() as c:
        c.assign("batch", [0, 1])
        got = drain(c)
    assert sorted(m.value for m in got) == [b"a", b"b", b"c", b"d"]
    assert {(m.partition, m.offset) for m in got} == {(md.partition, md.offset) for md in mds}


def test_create_topic_and_partition_count(broker):
    broker.create_topic("orders", partitions=4)
    assert broker.topic_partitions("orders") == 4
    with pytest.raises(kofka.UnknownTopicError):
        broker.topic_partitions("missing")


def test_create_topic_twice_raises_topic_exists(broker):
    broker.create_topic("dup", partitions=2)
    with pytest.raises(kofka.TopicExistsError) as ei:
        broker.create_topic("dup", partitions=2)
    assert ei.value.code == 6
    assert ei.value.name == "KOFKA_ERR_TOPIC_EXISTS"
    assert isinstance(ei.value, kofka.KofkaError)


@pytest.mark.parametrize("name", ["bad name!", "", "x" * 250, "slash/topic"])
def test_invalid_topic_name_raises_invalid_arg_naming_it(broker, name):
    with pytest.raises(kofka.InvalidArgError) as ei:
        broker.create_topic(name)
    assert ei.value.code == 1
    if name:
        assert name[:40] in ei.value.message


def test_unknown_config_key_raises_invalid_config_naming_the_key(broker):
    with pytest.raises(kofka.InvalidConfigError) as ei:
        broker.producer(config={"ackz": "all"})
    assert "ackz" in ei.value.message
    assert ei.value.code == 2 and ei.value.name == "KOFKA_ERR_INVALID_CONFIG"
    with pytest.raises(kofka.InvalidConfigError) as ei:
        broker.consumer(group_id="g", bogus_setting=True)  # -> bogus.setting
    assert "bogus.setting" in ei.value.message


def test_unknown_broker_config_key_raises_invalid_config(storage):
    with pytest.raises(kofka.InvalidConfigError) as ei:
        kofka.Broker(storage, config={"no.such.key": 1})
    assert "no.such.key" in ei.value.message


def test_invalid_config_value_raises_invalid_config(broker):
    with pytest.raises(kofka.InvalidConfigError):
        broker.producer(delivery="sometimes")


def test_unknown_storage_scheme_raises_invalid_arg_listing_known_ones():
    with pytest.raises(kofka.InvalidArgError) as ei:
        kofka.Broker("nosuchscheme://localhost/x")
    assert "memory:" in ei.value.message and "sqlite:" in ei.value.message
    assert "nosuchscheme" in ei.value.message


def test_a_postgresql_server_that_is_down_at_open_is_a_storage_error_naming_the_host():
    import os
    import socket

    beside = os.path.join(os.path.dirname(kofka.library_path), "libkofka_postgresql.so")
    if not os.path.exists(beside):
        pytest.skip("the PostgreSQL plugin is not installed beside %s" % kofka.library_path)

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(kofka.StorageError) as ei:
        kofka.Broker("postgres://kofka@127.0.0.1:%d/x" % port)
    assert "127.0.0.1" in ei.value.message and str(port) in ei.value.message


def test_keyword_config_is_mapped_and_bools_become_true_false(storage):
    with kofka.Broker(storage, auto_create_topics_enable=False) as b:
        with b.producer() as p:
            with pytest.raises(kofka.UnknownTopicError):
                p.send("never-created", b"x")
    with kofka.Broker(storage, config={"auto.create.topics.enable": True, "num.partitions": 3}) as b:
        with b.producer() as p:
            p.send("auto", b"x")
        assert b.topic_partitions("auto") == 3


def test_manual_assign_poll_poll_batch_seek_and_position(broker):
    broker.create_topic("seek", partitions=2)
    with broker.producer() as p:
        for i in range(10):
            p.send("seek", b"%d" % i, partition=0)
    with broker.consumer() as c:
        c.assign("seek", [0])
        m = c.poll(timeout=1.0)
        assert (m.partition, m.offset, m.value) == (0, 0, b"0")
        assert c.position("seek", 0) == 1
        batch = c.poll_batch(timeout=1.0, max=4)
        assert [x.offset for x in batch] == [1, 2, 3, 4]
        assert c.position("seek", 0) == 5
        c.seek("seek", 0, 8)
        assert c.position("seek", 0) == 8
        assert c.poll(timeout=1.0).value == b"8"
        c.seek("seek", 0, 2)
        rest = drain(c)
        assert [x.offset for x in rest] == list(range(2, 10))
        assert [x.value for x in rest] == [b"%d" % i for i in range(2, 10)]
        c.seek("seek", 0, 10)  # the high watermark: wait for new records
        assert c.poll(timeout=0.05) is None
        assert c.poll_batch(timeout=0.05) == []
        with pytest.raises(kofka.OffsetOutOfRangeError):
            c.seek("seek", 0, 11)
        with pytest.raises(kofka.InvalidStateError):
            c.position("seek", 1)  # not assigned


def test_poll_wakes_when_a_record_arrives_from_another_thread(broker):
    import threading
    import time

    broker.create_topic("wake")
    with broker.consumer() as c, broker.producer() as p:
        c.assign("wake", [0])
        assert c.poll(timeout=0.05) is None
        t = threading.Timer(0.2, lambda: p.send("wake", b"hello"))
        t.start()
        start = time.monotonic()
        m = c.poll(timeout=5.0)
        elapsed = time.monotonic() - start
        t.join()
        assert m is not None and m.value == b"hello"
        assert elapsed < 2.0


def test_iteration_blocks_for_the_next_message(broker):
    broker.create_topic("iter")
    with broker.producer() as p:
        for i in range(3):
            p.send("iter", b"%d" % i)
    with broker.consumer() as c:
        c.assign("iter", [0])
        got = []
        for m in c:
            got.append(m.value)
            if len(got) == 3:
                break
    assert got == [b"0", b"1", b"2"]


def test_commit_and_committed_is_minus_one_when_none(broker):
    broker.create_topic("cm", partitions=1)
    with broker.producer() as p:
        for i in range(5):
            p.send("cm", b"%d" % i)
    with broker.consumer(group_id="g1", enable_auto_commit=False) as c:
        c.assign("cm", [0])
        assert c.committed("cm", 0) == -1
        msgs = c.poll_batch(timeout=1.0, max=3)
        assert [m.offset for m in msgs] == [0, 1, 2]
        c.commit()
        assert c.committed("cm", 0) == 3
        c.commit_message(msgs[0])
        assert c.committed("cm", 0) == 1
    with broker.consumer(group_id="g1", enable_auto_commit=False) as c2:
        assert c2.committed("cm", 0) == 1
        c2.assign("cm", [0])
        assert c2.poll(timeout=1.0).offset == 1  # resumes at the committed offset
    with broker.consumer(group_id="other") as c3:
        assert c3.committed("cm", 0) == -1


def test_committed_without_group_id_raises_invalid_state(broker):
    broker.create_topic("nog")
    with broker.consumer() as c:
        c.assign("nog", [0])
        with pytest.raises(kofka.InvalidStateError):
            c.committed("nog", 0)
        with pytest.raises(kofka.InvalidStateError):
            c.commit()


def test_closing_twice_is_harmless(storage):
    b = kofka.Broker(storage)
    b.create_topic("twice")
    p = b.producer()
    c = b.consumer(group_id="g")
    p.close()
    p.close()
    c.close()
    c.close()
    c.destroy()
    c2 = b.consumer()
    c2.destroy()
    c2.destroy()
    c2.close()
    b.close()
    b.close()
    assert b.closed and p.closed and c.closed


def test_calls_on_a_closed_object_raise_closed_error(broker):
    broker.create_topic("x")
    p = broker.producer()
    p.close()
    with pytest.raises(kofka.ClosedError):
        p.send("x", b"v")
    c = broker.consumer()
    c.close()
    with pytest.raises(kofka.ClosedError):
        c.poll(0)


def test_after_broker_close_producer_and_consumer_calls_raise_closed_error(storage):
    b = kofka.Broker(storage)
    b.create_topic("bc")
    p = b.producer()
    c = b.consumer()
    c.assign("bc", [0])
    p.send("bc", b"before")
    b.close()
    with pytest.raises(kofka.ClosedError) as ei:
        p.send("bc", b"after")
    assert ei.value.code == 16
    with pytest.raises(kofka.ClosedError):
        c.poll(timeout=0.05)
    with pytest.raises(kofka.ClosedError):
        b.create_topic("later")
    # they must still be closable (and frees them)
    p.close()
    c.close()


def test_producer_and_consumer_keep_their_broker_alive(storage):
    import gc

    p = kofka.Broker(storage).producer()
    gc.collect()
    assert not p.broker.closed
    p.broker.create_topic("alive")
    assert p.send("alive", b"x").offset == 0
    b = p.broker
    p.close()
    b.close()


def _run(code: str, env_lib) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if env_lib is None:
        env.pop("KOFKA_LIBRARY", None)
    else:
        env["KOFKA_LIBRARY"] = env_lib
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_library_is_loaded_from_kofka_library(tmp_path):
    import shutil

    copy = tmp_path / "libkofka.so"
    shutil.copy(kofka.library_path, copy)
    r = _run("import kofka; print(kofka.library_path); print(kofka.__version__)", str(copy))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(copy), kofka.__version__]
    # a folder holding libkofka.so works too
    r = _run("import kofka; print(kofka.library_path)", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(copy)


def test_a_bad_kofka_library_is_a_clear_import_error(tmp_path):
    bogus = str(tmp_path / "nope" / "libkofka.so")
    r = _run("import kofka", bogus)
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert "KOFKA_LIBRARY" in r.stderr and bogus in r.stderr


def test_errors_carry_code_name_and_message():
    for code, cls in kofka._ERRORS.items():
        e = kofka._error_for(code, "detail")
        assert type(e) is cls
        assert e.code == code
        assert e.name.startswith("KOFKA_ERR_")
        assert e.message == "detail"
        assert isinstance(e, kofka.KofkaError)
    assert sorted(kofka._ERRORS) == list(range(1, 21))
    assert kofka._error_for(13).name == "KOFKA_ERR_PRODUCER_FENCED"
    assert kofka._error_for(13).message  # falls back to the description
    assert isinstance(kofka._error_for(18), BufferError)
    assert isinstance(kofka._error_for(10), TimeoutError)


def test_without_kofka_library_the_package_folder_then_the_build_folder_is_searched(tmp_path):
    import shutil

    project = tmp_path / "project"
    pkg_parent = project / "bindings" / "python"
    shutil.copytree(os.path.dirname(os.path.abspath(kofka.__file__)), pkg_parent / "kofka",
                    ignore=shutil.ignore_patterns("__pycache__", "libkofka.so"))
    (project / "Package.swift").write_text("// marker\n")
    code = "import kofka; print(kofka.library_path)"

    def run():
        env = dict(os.environ)
        env.pop("KOFKA_LIBRARY", None)
        env["PYTHONPATH"] = str(pkg_parent)
        env["LD_LIBRARY_PATH"] = ""
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=60, cwd=str(tmp_path))

    r = run()
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert str(project / ".build" / "release" / "libkofka.so") in r.stderr
    assert str(project / ".build" / "debug" / "libkofka.so") in r.stderr

    debug = project / ".build" / "debug" / "libkofka.so"
    debug.parent.mkdir(parents=True)
    shutil.copy(kofka.library_path, debug)
    r = run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(debug)

    release = project / ".build" / "release" / "libkofka.so"
    release.parent.mkdir(parents=True)
    shutil.copy(kofka.library_path, release)
    r = run()
    assert r.stdout.strip() == str(release)

    own = pkg_parent / "kofka" / "libkofka.so"
    shutil.copy(kofka.library_path, own)
    r = run()
    assert r.stdout.strip() == str(own)


def test_send_batch_reports_each_records_result_when_one_fails(storage):
    with kofka.Broker(storage, message_max_bytes=100) as b:
        b.create_topic("limits")
        with b.producer() as p:
            with pytest.raises(kofka.MsgTooLargeError) as ei:
                p.send_batch("limits", [b"a", b"x" * 200, b"c"])
            assert "message.max.bytes" in ei.value.message
            first, bad, last = ei.value.results
            assert first == kofka.RecordMetadata("limits", 0, 0)
            assert isinstance(bad, kofka.MsgTooLargeError)
            assert last == kofka.RecordMetadata("limits", 0, 1)
            with pytest.raises(kofka.MsgTooLargeError):
                p.send("limits", b"y" * 200)
        assert b.watermarks("limits", 0) == (0, 2)
