"""Kafka wire protocol benchmark: confluent-kafka (librdkafka) producing and consuming through
`kofka serve` (SQLite, sqlite.synchronous=normal) against the same client on librdkafka's
in-memory mock cluster (`test.mock.num.brokers`), in one run, with the same settings; then
produce-to-consume latency through `kofka serve`. Figures are printed, never asserted.

    swift build -c release --product kofka-cli --scratch-path .build-rel
    python3 bench/wire_bench.py --cli .build-rel/release/kofka-cli [--records N] [--size BYTES]
"""
import argparse
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, NewTopic

PRODUCER = {"linger.ms": 5, "batch.num.messages": 10_000, "queue.buffering.max.messages": 2_000_000,
            "acks": "all", "enable.idempotence": True}


def start_serve(cli, db):
    log = db + ".log"
    proc = subprocess.Popen([cli, "serve", "--storage", f"sqlite:{db}", "--listen", "127.0.0.1:0",
                             "-X", "sqlite.synchronous=normal"], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    end = time.time() + 30
    while time.time() < end:
        m = re.search(r"listening on [^ ]+:(\d+)", open(log).read())
        if m:
            return proc, f"127.0.0.1:{m.group(1)}"
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("kofka serve did not start: " + open(log).read())


def create(conf, topic, partitions):
    a = AdminClient(conf)
    for f in a.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(20)


def warm_up(conf, topic, partitions):
    """One record produced before timing (the mock cluster creates its topics so, with 4
    partitions: its CreateTopics does not answer); returns the topic's partition count."""
    p = ck.Producer(conf)
    p.produce(topic, b"warm-up")
    assert p.flush(20) == 0
    got = len(p.list_topics(topic, timeout=10).topics[topic].partitions)
    assert got == partitions, f"{topic} has {got} partitions, not {partitions}"


def produce(conf, topic, values):
    p = ck.Producer({**conf, **PRODUCER})
    errors = []
    t0 = time.perf_counter()
    for v in values:
        while True:
            try:
                p.produce(topic, v, on_delivery=lambda e, _m: e and errors.append(e))
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    assert p.flush(120) == 0 and not errors, errors[:3]
    return time.perf_counter() - t0


def consume(conf, topic, partitions):
    """Reads every record the partitions hold, from their log start; returns (seconds, records).
    The mock cluster keeps only the newest records of a partition (about 41,000 of 100 bytes
    here), so it may hold fewer than were produced."""
    c = ck.Consumer({**conf, "group.id": "bench-" + topic, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "fetch.max.bytes": 50 << 20})
    marks = [c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10) for p in range(partitions)]
    n = sum(high - low for low, high in marks)
    c.assign([ck.TopicPartition(topic, p, low) for p, (low, _high) in enumerate(marks)])
    got = 0
    per = {}
    start = time.perf_counter()
    t0 = None   # timed from the first record received: connecting and the first fetch are not throughput
    while got < n:
        for m in c.consume(10_000, 1.0):
            if m.error():
                raise SystemExit(f"consume: {m.error()}")
            got += 1
            per[m.partition()] = m.offset()
            if t0 is None:
                t0 = time.perf_counter()
        if time.perf_counter() - start > 120:
            raise SystemExit(f"consume: {got} of {n} after 120 s; last offset by partition {per}")
    dt = time.perf_counter() - t0
    c.close()
    return dt, n


def latency(conf, topic, count, interval, create_first=True):
    """Produce-to-consume latency: each record carries its send time; a consumer already
    assigned (fetch.wait.max.ms 100) notes its arrival."""
    c = ck.Consumer({**conf, "group.id": "lat-" + topic, "auto.offset.reset": "latest", "enable.auto.commit": False,
                     "fetch.wait.max.ms": 100, "fetch.min.bytes": 1})
    if not create_first:
        warm_up(conf, topic, 4)
    c.assign([ck.TopicPartition(topic, 0, ck.OFFSET_END)])
    lat = []
    done = threading.Event()

    def reader():
        while not done.is_set() or len(lat) < count:
            m = c.poll(0.1)   # one at a time: consume(n, t) would wait to fill n
            if m is not None and not m.error():
                lat.append(time.perf_counter() - float(m.value().decode()))
            if len(lat) >= count:
                break
    t = threading.Thread(target=reader)
    t.start()
    time.sleep(2.0)   # the consumer has its position
    p = ck.Producer({**conf, "linger.ms": 0, "acks": "all"})
    for _ in range(count):
        p.produce(topic, f"{time.perf_counter():.9f}".encode(), partition=0)
        p.poll(0)
        time.sleep(interval)
    p.flush(30)
    done.set()
    t.join(60)
    c.close()
    lat.sort()
    return lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build-rel", "release", "kofka-cli"))
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=4)   # the mock cluster's own
    ap.add_argument("--latency-records", type=int, default=2_000)
    a = ap.parse_args()
    n, parts = a.records, a.partitions
    values = [(b"%08d" % i) + b"x" * (a.size - 8) for i in range(n)]
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        proc, bootstrap = start_serve(a.cli, os.path.join(d, "bench.db"))
        try:
            # the mock cluster lives in its own client instances; each gets a fresh one
            mock = {"test.mock.num.brokers": 1}
            serve = {"bootstrap.servers": bootstrap}
            create(serve, "bench", parts)
            warm_up(serve, "bench", parts)
            rows["produce", "kofka serve"] = produce(serve, "bench", values), n
            rows["consume", "kofka serve"] = consume(serve, "bench", parts)
            # the mock cluster lives as long as the client that made it (held here); its broker
            # listens on TCP, and the benchmark's clients reach it there, as they reach kofka serve
            holder = ck.Producer(mock)
            brokers = holder.list_topics(timeout=10).brokers.values()
            mconf = {"bootstrap.servers": ",".join(f"{b.host}:{b.port}" for b in brokers)}
            warm_up(mconf, "bench", parts)
            rows["produce", "mock cluster"] = produce(mconf, "bench", values), n
            rows["consume", "mock cluster"] = consume(mconf, "bench", parts)
            lat_mock = latency(mconf, "lat", a.latency_records, 0.002, create_first=False)
            del holder
            create(serve, "lat", 1)
            lat = latency(serve, "lat", a.latency_records, 0.002)
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"kafka wire, confluent-kafka {ck.version()[0] if isinstance(ck.version(), tuple) else ck.version()} (librdkafka {ck.libversion()[0]}), "
          f"{n} records of {a.size} bytes, {parts} partitions, idempotent producer, acks=all")
    print(f"{'case':10} {'kofka serve (rec/s)':>20} {'mock cluster (rec/s)':>21} {'ratio':>7} {'target':>7}")
    for op in ("produce", "consume"):
        (kt, kn), (mt, mn) = rows[op, "kofka serve"], rows[op, "mock cluster"]
        k, m = kn / kt, mn / mt
        print(f"{op:10} {k:>20,.0f} {m:>21,.0f} {k / m:>7.2f} {'>= 0.5':>7} {'met' if k / m >= 0.5 else 'MISSED'}"
              f"   ({kn} and {mn} records)")
    print(f"produce-to-consume latency, {a.latency_records} records one every 2 ms (linger.ms 0, acks=all; consumer fetch.wait.max.ms 100):")
    for name, l in (("kofka serve", lat), ("mock cluster", lat_mock)):
        if l:
            pct = lambda q: l[min(len(l) - 1, int(q * len(l)))] * 1000  # noqa: E731
            print(f"  {name:13} {len(l)} received: p50 {pct(0.50):.2f} ms, p99 {pct(0.99):.2f} ms, max {l[-1] * 1000:.2f} ms, "
                  f"mean {statistics.mean(l) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
