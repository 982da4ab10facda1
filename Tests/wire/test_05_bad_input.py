"""Bad input, many connections and pipelining against `kofka serve`, with hand-built frames
(rawkafka.py), and records crossing between a library handle and a wire client.

Every bad input is followed by the same checks: the server process is alive, a second client
on a new connection is answered, and the records stored before are read back unchanged."""
import socket
import struct
import time

import pytest

import rawkafka as rk
from rawkafka import Conn

SEED = [f"seed-{i}".encode() for i in range(5)]


@pytest.fixture(scope="module")
def seeded(served):
    """A topic holding SEED at offsets 0..4, written before any bad input."""
    topic = "bad-input-seed"
    c = Conn(served.port)
    assert c.create_topic(topic, 1) == 0
    err, base = c.produce(topic, 0, rk.record_batch(SEED))
    assert (err, base) == (0, 0)
    c.close()
    return topic


def still_serving(served, seeded):
    """The server is alive, answers a new connection, and the seeded records are untouched."""
    assert served.alive(), open(served.log).read()[-3000:]
    c = Conn(served.port)
    err, keys = rk.api_versions_v0(c.api_versions(0))
    assert err == 0 and keys[18][0] == 0
    err, hw, recs = c.fetch(seeded, 0, 0)
    c.close()
    assert (err, hw) == (0, len(SEED))
    assert [(o, v) for o, _k, v in recs] == list(enumerate(SEED))


def closes_connection(served, data):
    """Sends `data` on a new connection; true when the server closes it, answering nothing."""
    c = Conn(served.port)
    c.send_raw(data)
    closed = c.closed_by_server()
    c.close()
    return closed


def test_a_frame_shorter_than_a_header_closes_that_connection_only(served, seeded):
    assert closes_connection(served, struct.pack(">i", 5) + b"\x00\x12\x00\x00\x00")
    still_serving(served, seeded)


def test_a_size_prefix_that_cuts_the_body_short_closes_that_connection(served, seeded):
    # A CreateTopics v0 whose size prefix stops in the middle of its topic array: the body is
    # malformed for the server, which must not read past the frame into the next bytes.
    body = rk.array([rk.string("never-created") + struct.pack(">ih", 1, 1) + rk.array([]) + rk.array([])]) + struct.pack(">i", 5000)
    full = rk.frame(19, 0, 1, body)
    cut = struct.pack(">i", len(full) - 4 - 12) + full[4:]   # 12 bytes fewer than it holds
    assert closes_connection(served, cut)
    still_serving(served, seeded)
    m = Conn(served.port)
    err, _ = m.list_offsets("never-created", 0)
    m.close()
    assert err == 3   # UNKNOWN_TOPIC_OR_PARTITION: the cut request created nothing


def test_a_negative_size_prefix_closes_that_connection(served, seeded):
    assert closes_connection(served, struct.pack(">i", -4) + b"\x00" * 16)
    still_serving(served, seeded)


def test_a_2_gb_size_prefix_closes_that_connection_without_allocating(served, seeded):
    assert closes_connection(served, struct.pack(">i", 0x7FFFFFFF) + b"\x00\x12\x00\x00")
    still_serving(served, seeded)


def test_an_unknown_api_key_closes_that_connection_as_kafka_does(served, seeded):
    assert closes_connection(served, rk.frame(9999, 0, 7, b""))
    # an API Kafka has but Kofka does not serve (DescribeAcls, 29) is unknown here too
    assert closes_connection(served, rk.frame(29, 0, 8, b""))
    still_serving(served, seeded)


def test_an_unsupported_api_versions_version_is_answered_with_error_35_in_a_v0_response(served, seeded):
    c = Conn(served.port)
    # a future version with a body this server cannot know: Kafka answers in v0 (no throttle
    # time, no tagged fields) with UNSUPPORTED_VERSION and the full list of supported ranges
    c.send_raw(rk.frame(18, 127, 4242, b"\x00\x01\x02\x03garbage"))
    cid, body = c.read_response()
    assert cid == 4242
    err, keys = rk.api_versions_v0(body)
    assert err == 35
    assert keys[18] == (0, 3)
    assert keys[0][0] <= 3 <= keys[0][1] and keys[1][0] <= 4 <= keys[1][1]
    # the same ranges as a successful v0 answer, and the connection stays open for the downgrade
    err0, keys0 = rk.api_versions_v0(c.api_versions(0))
    c.close()
    assert err0 == 0 and keys0 == keys
    still_serving(served, seeded)


def test_a_truncated_batch_is_refused_with_corrupt_message_and_stores_nothing(served, seeded, topic):
    c = Conn(served.port)
    assert c.create_topic(topic, 1) == 0
    batch = rk.record_batch([b"a", b"b", b"c"])
    err, _ = c.produce(topic, 0, batch[:-7])   # the batch length says 7 bytes more than follow
    assert err == 2   # CORRUPT_MESSAGE
    # a batch whose last record is cut inside its length but whose batch length matches
    short = bytearray(batch[:-3])
    struct.pack_into(">i", short, 8, len(short) - 12)
    body = bytes(short[21:])
    struct.pack_into(">I", short, 17, rk.crc32c(body))
    err, _ = c.produce(topic, 0, bytes(short))
    assert err == 2
    err, hw, recs = c.fetch(topic, 0, 0)
    assert (err, hw, recs) == (0, 0, [])
    # the connection still works: a good batch lands at offset 0
    assert c.produce(topic, 0, rk.record_batch([b"ok"])) == (0, 0)
    c.close()
    still_serving(served, seeded)


def test_a_crc_mismatch_is_refused_with_corrupt_message_and_stores_nothing(served, seeded, topic):
    c = Conn(served.port)
    assert c.create_topic(topic, 1) == 0
    err, _ = c.produce(topic, 0, rk.record_batch([b"x", b"y"], corrupt_crc=True))
    assert err == 2
    # one flipped payload byte with the CRC left as it was
    good = bytearray(rk.record_batch([b"x", b"y"]))
    good[-3] ^= 0x40
    err, _ = c.produce(topic, 0, bytes(good))
    assert err == 2
    assert c.fetch(topic, 0, 0)[:2] == (0, 0)
    c.close()
    # a bad batch into the seeded topic leaves its records and high watermark as they were
    c = Conn(served.port)
    err, _ = c.produce(seeded, 0, rk.record_batch([b"evil"], corrupt_crc=True))
    assert err == 2
    c.close()
    still_serving(served, seeded)


def test_garbage_after_a_good_request_closes_only_that_connection(served, seeded):
    c = Conn(served.port)
    cid = c.send_request(18, 0, b"")
    c.send_raw(struct.pack(">i", 12) + b"\xff" * 12)   # API key -1
    assert c.read_response()[0] == cid
    assert c.closed_by_server()
    c.close()
    still_serving(served, seeded)


def test_a_hundred_and_fifty_simultaneous_connections_are_all_answered(served, seeded):
    conns = [Conn(served.port) for _ in range(150)]
    try:
        sent = [c.send_request(3, 1, rk.array([rk.string(seeded)])) for c in conns]   # Metadata v1
        for c, cid in zip(conns, sent):
            got = c.read_response()
            assert got is not None and got[0] == cid
        # every one of them is still usable, in any order
        for c in reversed(conns):
            err, hw, recs = c.fetch(seeded, 0, 3)
            assert (err, hw, [o for o, _k, _v in recs]) == (0, len(SEED), [3, 4])
    finally:
        for c in conns:
            c.close()
    still_serving(served, seeded)


def test_pipelined_requests_are_answered_in_order_and_applied_in_order(served, seeded, topic):
    c = Conn(served.port)
    assert c.create_topic(topic, 1) == 0
    # a Fetch that must wait (min bytes unreachable, 400 ms), then quick requests behind it
    expected = [("fetch", c.send_request(1, 4, rk.fetch_body_v4(topic, 0, 0, max_wait_ms=400, min_bytes=1 << 30)))]
    for i in range(40):
        if i % 4 == 3:
            expected.append(("versions", c.send_request(18, 0, b"")))
        else:
            expected.append(("produce", c.send_request(0, 3, rk.produce_body(topic, 0, rk.record_batch([f"p{i}".encode()])))))
    t0 = time.time()
    produced = []
    for kind, cid in expected:
        got = c.read_response()
        assert got is not None, f"closed before the answer to {kind} {cid}"
        assert got[0] == cid, f"answer {got[0]} where {cid} ({kind}) was due"
        if kind == "fetch":
            assert time.time() - t0 >= 0.3   # it did wait, and nothing overtook it
        if kind == "produce":
            r = rk._Reader(got[1], 4)
            r.pos += 2 + r.take(">h") + 4
            _p, err, base = r.take(">ihq")
            assert err == 0
            produced.append(base)
    assert produced == list(range(30))   # applied in the order sent
    err, hw, recs = c.fetch(topic, 0, 0)
    assert hw == 30 and [v for _o, _k, v in recs] == [f"p{i}".encode() for i in range(40) if i % 4 != 3]
    c.close()
    still_serving(served, seeded)


def test_records_cross_between_a_library_handle_and_a_wire_client_with_the_same_offsets(served, topic):
    ck = pytest.importorskip("confluent_kafka")
    import kofka

    with kofka.Broker(served.storage) as lib:
        # library -> wire
        lib.create_topic(topic, 2)
        with lib.producer() as p:
            sent = [p.send(topic, f"lib-{i}".encode(), partition=i % 2) for i in range(20)]
        assert sorted((m.partition, m.offset) for m in sent) == sorted((i % 2, i // 2) for i in range(20))
        c = ck.Consumer({"bootstrap.servers": served.bootstrap, "group.id": "x-" + topic,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.assign([ck.TopicPartition(topic, 0, 0), ck.TopicPartition(topic, 1, 0)])
        got, end = [], time.time() + 20
        while len(got) < 20 and time.time() < end:
            for m in c.consume(100, 0.2):
                assert not m.error(), m.error()
                got.append(m)
        assert sorted((m.partition(), m.offset(), m.value()) for m in got) == \
            sorted((m.partition, m.offset, f"lib-{i}".encode()) for i, m in enumerate(sent))
        # the wire consumer's committed offsets are the library's
        c.commit(offsets=[ck.TopicPartition(topic, 0, 10), ck.TopicPartition(topic, 1, 10)], asynchronous=False)
        c.close()
        with lib.consumer(group_id="x-" + topic) as lc:
            assert [lc.committed(topic, p) for p in (0, 1)] == [10, 10]

        # wire -> library
        acks = []
        wp = ck.Producer({"bootstrap.servers": served.bootstrap, "linger.ms": 1})
        for i in range(20):
            wp.produce(topic, value=f"wire-{i}".encode(), partition=i % 2,
                       on_delivery=lambda e, m: acks.append((e, m.partition(), m.offset(), m.value())))
        assert wp.flush(20) == 0
        assert all(e is None for e, *_ in acks)
        assert sorted((p, o) for _e, p, o, _v in acks) == sorted((i % 2, 10 + i // 2) for i in range(20))
        assert [lib.watermarks(topic, p) for p in (0, 1)] == [(0, 20), (0, 20)]
        with lib.consumer(group_id="x-" + topic, auto_offset_reset="earliest") as lc:
            lc.subscribe(topic)
            seen, end = [], time.time() + 20
            while len(seen) < 20 and time.time() < end:
                seen += lc.poll_batch(0.5)
        assert sorted((m.partition, m.offset, m.value) for m in seen) == sorted((p, o, v) for _e, p, o, v in acks)
