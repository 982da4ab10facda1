"""kafka-python (pure Python, its own protocol code) against `kofka serve`."""
import time

import pytest

kafka = pytest.importorskip("kafka")
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402
from kafka.structs import TopicPartition  # noqa: E402


@pytest.fixture
def adm(served):
    a = KafkaAdminClient(bootstrap_servers=served.bootstrap)
    yield a
    a.close()


def test_kafka_python_produces_and_consumes_in_a_group(served, topic, adm):
    adm.create_topics([NewTopic(topic, 3, 1)])
    p = kafka.KafkaProducer(bootstrap_servers=served.bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    futures = [p.send(topic, key=str(i).encode(), value=f"v{i}".encode()) for i in range(1000)]
    p.flush()
    mds = [f.get(10) for f in futures]
    p.close()
    for part in range(3):
        offs = sorted(m.offset for m in mds if m.partition == part)
        assert offs == list(range(len(offs)))
    c = kafka.KafkaConsumer(topic, bootstrap_servers=served.bootstrap, group_id="g-" + topic, auto_offset_reset="earliest",
                            enable_auto_commit=False, consumer_timeout_ms=4000)
    got = [m for m in c]
    assert sorted(m.value for m in got) == sorted(f"v{i}".encode() for i in range(1000))
    c.commit()
    committed = {part: c.committed(TopicPartition(topic, part)) for part in range(3)}
    c.close()
    assert committed == {part: sum(1 for m in mds if m.partition == part) for part in range(3)}
    assert ("g-" + topic) in {g["group_id"] if isinstance(g, dict) else g[0] for g in adm.list_groups()}


def test_kafka_python_group_of_two_shares_partitions(served, topic, adm):
    adm.create_topics([NewTopic(topic, 4, 1)])
    p = kafka.KafkaProducer(bootstrap_servers=served.bootstrap)
    for i in range(200):
        p.send(topic, value=str(i).encode(), partition=i % 4)
    p.flush()
    conf = dict(bootstrap_servers=served.bootstrap, group_id="g-" + topic, auto_offset_reset="earliest",
                enable_auto_commit=False, heartbeat_interval_ms=300, session_timeout_ms=6000)
    a = kafka.KafkaConsumer(topic, **conf)
    b = kafka.KafkaConsumer(topic, **conf)
    got = {}
    end = time.time() + 40
    while time.time() < end and (len(got) < 200 or not (a.assignment() and b.assignment())):
        for who, c in (("a", a), ("b", b)):
            for tp, msgs in c.poll(200).items():
                for m in msgs:
                    got.setdefault(m.value, who)
    pa = {tp.partition for tp in a.assignment()}
    pb = {tp.partition for tp in b.assignment()}
    a.close(); b.close()
    assert pa and pb and pa.isdisjoint(pb) and pa | pb == {0, 1, 2, 3}
    assert sorted(got) == sorted(str(i).encode() for i in range(200))


def test_kafka_python_admin_delete_records_and_topics(served, topic, adm):
    adm.create_topics([NewTopic(topic, 1, 1)])
    p = kafka.KafkaProducer(bootstrap_servers=served.bootstrap)
    for i in range(50):
        p.send(topic, value=str(i).encode(), partition=0)
    p.flush()
    adm.delete_records({TopicPartition(topic, 0): 20})
    c = kafka.KafkaConsumer(bootstrap_servers=served.bootstrap)
    tp = TopicPartition(topic, 0)
    assert c.beginning_offsets([tp])[tp] == 20 and c.end_offsets([tp])[tp] == 50
    c.close()
    adm.delete_topics([topic])
    end = time.time() + 10
    while time.time() < end and topic in adm.list_topics():
        time.sleep(0.1)
    assert topic not in adm.list_topics()


def test_kafka_python_transactions_and_read_committed(served, topic, adm):
    adm.create_topics([NewTopic(topic, 1, 1)])
    p = kafka.KafkaProducer(bootstrap_servers=served.bootstrap, transactional_id="kp-tx-" + topic)
    p.init_transactions()
    p.begin_transaction()
    for i in range(10):
        p.send(topic, value=f"c{i}".encode(), partition=0)
    p.commit_transaction()
    p.begin_transaction()
    for i in range(10):
        p.send(topic, value=f"a{i}".encode(), partition=0)
    p.flush()
    p.abort_transaction()
    p.close()

    def read(iso):
        c = kafka.KafkaConsumer(topic, bootstrap_servers=served.bootstrap, auto_offset_reset="earliest",
                                isolation_level=iso, consumer_timeout_ms=3000)
        vals = [m.value.decode() for m in c]
        c.close()
        return vals

    assert read("read_committed") == [f"c{i}" for i in range(10)]
    assert sorted(read("read_uncommitted")) == sorted([f"c{i}" for i in range(10)] + [f"a{i}" for i in range(10)])
