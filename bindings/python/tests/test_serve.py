"""Broker.serve(): the broker's storage served over Kafka's wire protocol from inside a Python
program, while the program keeps using it through the library."""

from __future__ import annotations

import socket
import struct

import pytest

import kofka


def _api_versions_v0(port: int) -> tuple:
    """(error code, api keys) of an ApiVersions v0 request sent over a raw socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        header = struct.pack(">hhih", 18, 0, 1, 2) + b"py"
        s.sendall(struct.pack(">i", len(header)) + header)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        body = s.recv(size, socket.MSG_WAITALL)
    corr, err, count = struct.unpack(">ihi", body[:10])
    assert corr == 1
    keys = [struct.unpack(">h", body[10 + i * 6 : 12 + i * 6])[0] for i in range(count)]
    return err, keys


def test_serve_picks_a_port_answers_kafka_requests_and_stops(storage):
    with kofka.Broker(storage) as b:
        with b.serve("127.0.0.1:0", server_worker_threads=2) as server:
            assert 0 < server.port < 65536
            err, keys = _api_versions_v0(server.port)
            assert err == 0 and 0 in keys and 1 in keys
            port = server.port
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        b.create_topic("after-stop", partitions=1)  # the broker stays usable


def test_a_kafka_client_and_the_library_share_the_served_storage(storage):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    with kofka.Broker(storage) as b:
        b.create_topic("shared", partitions=1)
        with b.producer() as p:
            for i in range(3):
                p.send("shared", b"lib-%d" % i, partition=0)
        with b.serve("127.0.0.1:0") as server:
            bootstrap = "127.0.0.1:%d" % server.port
            wp = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
            for i in range(3):
                wp.produce("shared", b"wire-%d" % i, partition=0)
            assert wp.flush(20) == 0
            wc = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "g-serve",
                                           "auto.offset.reset": "earliest", "enable.auto.commit": False})
            wc.assign([confluent_kafka.TopicPartition("shared", 0, 0)])
            got = []
            while len(got) < 6:
                m = wc.poll(10)
                assert m is not None, "the wire consumer timed out after %r" % got
                assert m.error() is None, m.error()
                got.append((m.offset(), m.value()))
            wc.close()
        assert got == [(i, b"lib-%d" % i) for i in range(3)] + [(3 + i, b"wire-%d" % i) for i in range(3)]
        with b.consumer({"group.id": "lib"}) as c:
            c.assign("shared", [0])
            values = [m.value for m in c.poll_batch(timeout=5, max=10)]
        assert values == [b"lib-0", b"lib-1", b"lib-2", b"wire-0", b"wire-1", b"wire-2"]


def test_serve_refuses_bad_addresses_and_keys(storage):
    with kofka.Broker(storage) as b:
        with pytest.raises(kofka.InvalidArgError):
            b.serve("127.0.0.1:notaport")
        with pytest.raises(kofka.InvalidConfigError):
            b.serve("127.0.0.1:0", config={"no.such.key": "1"})
    with pytest.raises(kofka.ClosedError):
        b.serve("127.0.0.1:0")
