"""Python-face benchmark: Kofka's fastest producing API versus confluent-kafka (librdkafka)
producing to librdkafka's built-in mock cluster, and the SQLite queues persist-queue and
litequeue, for the same records, measured in one run; and the per-record idiom (produce() +
flush(), consumer poll()) beside the batch calls, on memory and SQLite. Figures are printed,
never asserted.

    python3 bench/python_bench.py [--records N] [--size BYTES] [--json]
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
import kofka  # noqa: E402


def best(fn, runs=3):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    n, size = a.records, a.size
    values = [(b"%08d" % i) + b"x" * (size - 8) for i in range(n)]
    rows = []

    def kofka_batch(storage, mode):
        def run():
            with kofka.Broker(storage) as b:
                b.create_topic("bench", partitions=1)
                with b.producer(delivery=mode) as p:
                    for i in range(0, n, 10_000):
                        p.send_batch("bench", values[i:i + 10_000])
        return run

    def kofka_async(storage):
        # The idiom of confluent-kafka, as its row below runs it: produce() and poll(0) per
        # record, flush() at the end.
        def run():
            with kofka.Broker(storage) as b:
                b.create_topic("bench", partitions=1)
                with b.producer(delivery="at-least-once") as p:
                    for v in values:
                        try:
                            p.produce("bench", v)
                        except kofka.QueueFullError:   # serve reports, as confluent-kafka users do
                            p.poll(0.1)
                            p.produce("bench", v)
                        p.poll(0)
                    p.flush()
        return run

    def kofka_consume(storage, per_record, count):
        # count records written with send_batch first (not timed), then read back with a
        # group consumer (at-least-once, default commits): poll() per record or poll_batch().
        with kofka.Broker(storage) as b:
            b.create_topic("bench", partitions=1)
            with b.producer(delivery="at-least-once") as p:
                for i in range(0, count, 10_000):
                    p.send_batch("bench", values[i:min(i + 10_000, count)])
            with b.consumer(group_id="bench", auto_offset_reset="earliest") as c:
                c.assign("bench", 0)
                got = 0
                t0 = time.perf_counter()
                if per_record:
                    while got < count:
                        if c.poll(1.0) is not None:
                            got += 1
                else:
                    while got < count:
                        got += len(c.poll_batch(1.0))
                return time.perf_counter() - t0

    results = {}
    results["kofka memory send_batch at-least-once"] = best(kofka_batch("memory:", "at-least-once"))
    results["kofka memory send_batch exactly-once"] = best(kofka_batch("memory:", "exactly-once"))
    tmpdir = tempfile.mkdtemp(prefix="kofka-pybench-")
    results["kofka memory produce+poll(0)+flush (per record)"] = best(kofka_async("memory:"), runs=1)
    results["kofka sqlite produce+poll(0)+flush (per record)"] = best(
        lambda: kofka_async("sqlite:" + os.path.join(tempfile.mkdtemp(dir=tmpdir), "p.db"))(), runs=1)
    # Consumption: poll() per record against poll_batch() of the same consumer, n records each.
    small = min(n, 20_000)
    for storage in ("memory", "sqlite"):
        def st(storage=storage):
            return "memory:" if storage == "memory" else "sqlite:" + os.path.join(tempfile.mkdtemp(dir=tmpdir), "c.db")
        results[f"kofka {storage} consumer poll_batch"] = kofka_consume(st(), False, n)
        results[f"kofka {storage} consumer poll (per record)"] = kofka_consume(st(), True, n)

    try:
        import confluent_kafka

        def ck():
            p = confluent_kafka.Producer({"test.mock.num.brokers": 1, "linger.ms": 5, "queue.buffering.max.messages": 2_000_000,
                                          "batch.num.messages": 10_000, "acks": "all"})
            for v in values:
                p.produce("bench", v)
                p.poll(0)
            p.flush()
        results["confluent-kafka -> mock cluster (produce+poll(0)+flush)"] = best(ck, runs=1)
    except ImportError:
        pass

    try:
        import persistqueue

        def pq():
            q = persistqueue.SQLiteQueue(tempfile.mkdtemp(dir=tmpdir), auto_commit=True, multithreading=False)
            for v in values[:small]:
                q.put(v)
        t = best(pq, runs=1)
        results["persist-queue SQLiteQueue.put"] = t * n / small
    except ImportError:
        pass
    try:
        import litequeue

        def lq():
            q = litequeue.LiteQueue(os.path.join(tempfile.mkdtemp(dir=tmpdir), "q.db"))
            for v in values[:small]:
                q.put(v.decode())
        t = best(lq, runs=1)
        results["litequeue LiteQueue.put"] = t * n / small
    except ImportError:
        pass

    ref = results.get("confluent-kafka -> mock cluster (produce+poll(0)+flush)")
    fastest = min(results["kofka memory send_batch at-least-once"], results["kofka memory send_batch exactly-once"])
    out = []
    for name, t in results.items():
        out.append({"case": name, "records_per_s": n / t, "seconds_for_n": t})
    if a.json:
        print(json.dumps({"records": n, "size": size, "rows": out}))
        return
    print(f"python face, {n} records of {size} bytes (persist-queue/litequeue measured on {small}, and scaled)")
    print(f"{'case':52} {'records/s':>12} {'kofka fastest / this':>22} {'this / confluent-kafka':>24}")
    for r in out:
        vs = f"{ref / r['seconds_for_n']:23.2f}x" if ref else ""
        print(f"{r['case']:52} {r['records_per_s']:12,.0f} {r['seconds_for_n'] / fastest:21.1f}x {vs}")


if __name__ == "__main__":
    main()
