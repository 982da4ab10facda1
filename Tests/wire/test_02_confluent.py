"""confluent-kafka (librdkafka) against `kofka serve`: admin, produce/consume, idempotence,
a consumer group that rebalances, read_committed against read_uncommitted."""
import time

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from conftest import wait_until


def admin(served):
    return AdminClient({"bootstrap.servers": served.bootstrap})


def create(served, topic, partitions, a=None):
    a = a or admin(served)   # the client must outlive its futures
    for f in a.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(10)


def drain(consumer, expect, timeout=30):
    got, end = [], time.time() + timeout
    while len(got) < expect and time.time() < end:
        for m in consumer.consume(500, 0.2):
            assert not m.error(), m.error()
            got.append(m)
    return got


def test_admin_creates_describes_and_deletes_topics(served, topic):
    a = admin(served)
    create(served, topic, 3, a)
    md = a.list_topics(timeout=10)
    assert len(md.topics[topic].partitions) == 3
    assert md.brokers[0].port == served.port and md.controller_id == 0
    with __import__("pytest").raises(ck.KafkaException) as e:
        create(served, topic, 3, a)
    assert e.value.args[0].code() == ck.KafkaError.TOPIC_ALREADY_EXISTS
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    cfg = a.describe_configs([res])[res].result(10)
    assert cfg["cleanup.policy"].value == "delete"
    for f in a.delete_topics([topic]).values():
        f.result(10)
    assert wait_until(lambda: topic not in a.list_topics(timeout=10).topics, 10)


def test_produce_and_consume_every_record_once_with_exact_offsets(served, topic):
    create(served, topic, 3)
    p = ck.Producer({"bootstrap.servers": served.bootstrap, "linger.ms": 5})
    acks = []
    for i in range(3000):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), on_delivery=lambda e, m: acks.append((e, m.partition(), m.offset())))
    assert p.flush(30) == 0
    assert all(e is None for e, _, _ in acks)
    # offsets per partition are dense from 0, as Kofka stores them
    for part in range(3):
        offs = sorted(o for _, pp, o in acks if pp == part)
        assert offs == list(range(len(offs)))
    c = ck.Consumer({"bootstrap.servers": served.bootstrap, "group.id": "g-" + topic, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = drain(c, 3000)
    c.close()
    assert sorted(m.value() for m in got) == sorted(f"v{i}".encode() for i in range(3000))
    assert {(m.partition(), m.offset()) for m in got} == {(pp, o) for _, pp, o in acks}


def test_idempotent_producer_writes_each_record_once_in_order(served, topic):
    create(served, topic, 2)
    p = ck.Producer({"bootstrap.servers": served.bootstrap, "enable.idempotence": True, "linger.ms": 2,
                     "max.in.flight.requests.per.connection": 5, "batch.num.messages": 50})
    for i in range(5000):
        p.produce(topic, value=str(i).encode(), partition=i % 2)
    assert p.flush(30) == 0
    c = ck.Consumer({"bootstrap.servers": served.bootstrap, "group.id": "g-" + topic, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = drain(c, 5000)
    c.close()
    for part in range(2):
        vals = [int(m.value()) for m in sorted(got, key=lambda m: m.offset()) if m.partition() == part]
        assert vals == list(range(part, 5000, 2)), "lost, duplicated or reordered"


def test_consumer_group_rebalances_between_two_members_and_back(served, topic):
    create(served, topic, 4)
    p = ck.Producer({"bootstrap.servers": served.bootstrap})
    for i in range(400):
        p.produce(topic, value=f"a{i}".encode(), partition=i % 4)
    p.flush(10)
    conf = {"bootstrap.servers": served.bootstrap, "group.id": "g-" + topic, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "heartbeat.interval.ms": 300, "session.timeout.ms": 6000}
    a = ck.Consumer(conf)
    a.subscribe([topic])
    first = drain(a, 400)
    assert len(first) == 400
    a.commit(asynchronous=False)
    assert len(a.assignment()) == 4
    b = ck.Consumer(conf)
    b.subscribe([topic])
    # both poll until the group settles with two members sharing the four partitions
    def settled():
        a.poll(0.1); b.poll(0.1)
        return len(a.assignment()) + len(b.assignment()) == 4 and a.assignment() and b.assignment()
    assert wait_until(settled, 30)
    owned_a = {tp.partition for tp in a.assignment()}
    owned_b = {tp.partition for tp in b.assignment()}
    assert owned_a.isdisjoint(owned_b) and owned_a | owned_b == {0, 1, 2, 3}
    for i in range(400):
        p.produce(topic, value=f"b{i}".encode(), partition=i % 4)
    p.flush(10)
    got = []
    end = time.time() + 30
    while len(got) < 400 and time.time() < end:
        for c in (a, b):
            for m in c.consume(100, 0.1):
                if not m.error():
                    got.append((c is a, m.partition(), m.value()))
    assert sorted(v for _, _, v in got) == sorted(f"b{i}".encode() for i in range(400))
    assert all((pa in owned_a) == is_a for is_a, pa, _ in got), "a record came from a partition its consumer does not own"
    a.commit(asynchronous=False); b.commit(asynchronous=False)
    b.close()
    assert wait_until(lambda: (a.poll(0.1), len(a.assignment()) == 4)[1], 30)
    committed = a.committed([ck.TopicPartition(topic, i) for i in range(4)], timeout=10)
    assert [tp.offset for tp in committed] == [200, 200, 200, 200]
    a.close()
    adm = admin(served)
    groups = adm.list_consumer_groups().result(10)
    assert "g-" + topic in {g.group_id for g in groups.valid}


def test_read_committed_skips_aborted_transactions_read_uncommitted_does_not(served, topic):
    create(served, topic, 2)
    p = ck.Producer({"bootstrap.servers": served.bootstrap, "transactional.id": "tx-" + topic})
    p.init_transactions(10)
    for r in range(6):
        p.begin_transaction()
        for i in range(10):
            p.produce(topic, value=f"r{r}-{i}".encode(), partition=i % 2)
        if r % 2 == 0:
            p.commit_transaction(10)
        else:
            p.flush(10)   # the records reach the log before the abort
            p.abort_transaction(10)
    # an open transaction at the end: read_committed stops at its first offset (the LSO)
    p.begin_transaction()
    p.produce(topic, value=b"open", partition=0)
    p.flush(10)

    def read(iso, expect):
        c = ck.Consumer({"bootstrap.servers": served.bootstrap, "group.id": f"g-{iso}-{topic}", "auto.offset.reset": "earliest",
                         "isolation.level": iso})
        c.subscribe([topic])
        got = drain(c, expect, timeout=15)
        time.sleep(1)
        got += [m for m in c.consume(100, 0.5) if not m.error()]
        c.close()
        return [m.value().decode() for m in got]

    committed = read("read_committed", 30)
    uncommitted = read("read_uncommitted", 61)
    assert sorted(committed) == sorted(f"r{r}-{i}" for r in (0, 2, 4) for i in range(10))
    assert len(uncommitted) == 61 and "open" in uncommitted
    p.commit_transaction(10)
    assert "open" in read("read_committed", 31)


def test_delete_records_moves_the_low_watermark_for_wire_consumers(served, topic):
    create(served, topic, 1)
    p = ck.Producer({"bootstrap.servers": served.bootstrap})
    for i in range(100):
        p.produce(topic, value=str(i).encode(), partition=0)
    p.flush(10)
    a = admin(served)
    res = a.delete_records([ck.TopicPartition(topic, 0, 40)])
    r = list(res.values())[0].result(10)
    assert r.low_watermark == 40
    c = ck.Consumer({"bootstrap.servers": served.bootstrap, "group.id": "g-" + topic, "auto.offset.reset": "earliest"})
    assert c.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=10) == (40, 100)
    c.subscribe([topic])
    got = drain(c, 60)
    c.close()
    assert [m.offset() for m in got] == list(range(40, 100))
