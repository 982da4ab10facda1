"""The example from API.md / the README runs as written."""

from __future__ import annotations

import threading

import kofka


def test_the_documented_example_runs_and_reads_back_what_it_wrote(tmp_path):
    with kofka.Broker("sqlite:" + str(tmp_path / "events.db")) as broker:
        broker.create_topic("orders", partitions=3)
        with broker.producer(delivery="exactly-once", transactional_id="orders-tx") as p:
            p.init_transactions()
            with p.transaction():
                md = p.send("orders", b"value", key=b"k")
        assert isinstance(md, kofka.RecordMetadata)
        assert md.topic == "orders" and md.offset == 0
        with broker.consumer(group_id="billing", delivery="at-least-once") as c:
            c.subscribe(["orders"])
            msgs = []
            for _ in range(50):
                msgs = c.poll_batch(timeout=0.1)
                if msgs:
                    break
            assert [(m.topic, m.partition, m.offset, m.key, m.value) for m in msgs] == [
                ("orders", md.partition, 0, b"k", b"value")
            ]
            c.commit()
            assert c.committed("orders", md.partition) == 1


def test_one_producer_can_be_shared_by_several_threads(broker):
    broker.create_topic("shared", partitions=2)
    results = []
    errors = []
    with broker.producer(delivery="exactly-once") as p:

        def work(t: int) -> None:
            try:
                for i in range(100):
                    results.append(p.send("shared", b"%d-%d" % (t, i), key=b"t%d" % t))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert errors == []
    assert len(results) == 400
    for part in (0, 1):
        offsets = sorted(md.offset for md in results if md.partition == part)
        assert offsets == list(range(len(offsets)))
        assert broker.watermarks("shared", part) == (0, len(offsets))
