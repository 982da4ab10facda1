"""Topic configuration, DeleteRecords, maintenance and offsets below the log start, from Python,
on both backends."""

import pytest

import kofka
from conftest import drain


def test_topic_config_is_stored_with_the_topic_and_falls_back_to_broker_defaults(broker):
    broker.create_topic("t", partitions=2, config={"retention.bytes": 1000, "cleanup.policy": "delete,compact"})
    assert broker.topic_config("t", "retention.bytes") == "1000"
    assert broker.topic_config("t", "cleanup.policy") == "compact,delete"
    assert broker.topic_config("t", "retention.ms") == "-1"  # unlimited unless set
    broker.set_topic_config("t", {"retention.bytes": "", "retention.ms": 60000})
    assert broker.topic_config("t", "retention.bytes") == "-1"
    assert broker.topic_config("t", "retention.ms") == "60000"
    with pytest.raises(kofka.InvalidConfigError, match="retention.msx"):
        broker.set_topic_config("t", {"retention.msx": 1})
    with pytest.raises(kofka.InvalidConfigError, match="shred"):
        broker.create_topic("u", config={"cleanup.policy": "shred"})
    with pytest.raises(kofka.UnknownTopicError):
        broker.topic_config("missing", "retention.ms")


def test_delete_records_moves_the_low_watermark_and_consumers_below_it_follow_auto_offset_reset(broker):
    broker.create_topic("t")
    with broker.producer() as p:
        p.send_batch("t", [b"v%d" % i for i in range(10)])
    assert broker.delete_records("t", 0, 4) == 4
    assert broker.watermarks("t", 0) == (4, 10)
    with pytest.raises(kofka.OffsetOutOfRangeError):
        broker.delete_records("t", 0, 11)
    with broker.consumer(group_id="early", auto_offset_reset="earliest") as c:
        c.assign("t", [0])
        assert [m.offset for m in drain(c)] == list(range(4, 10))
    with broker.consumer(group_id="strict", auto_offset_reset="none") as c:
        c.assign("t", [0])
        c.seek("t", 0, 5)
        c.commit()
    broker.delete_records("t", 0, 8)
    with broker.consumer(group_id="strict", auto_offset_reset="none") as c:
        c.assign("t", [0])
        with pytest.raises(kofka.OffsetOutOfRangeError, match="log start"):
            c.poll(0)
    assert broker.delete_records("t", 0) == 10  # -1: everything; the high watermark stays
    assert broker.watermarks("t", 0) == (10, 10)


def test_maintain_applies_retention_bytes_and_compaction(broker):
    broker.create_topic("sized", config={"retention.bytes": 300})
    broker.create_topic("keys", config={"cleanup.policy": "compact"})
    with broker.producer() as p:
        p.send_batch("sized", [bytes(100)] * 10)
        p.send_batch("keys", [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"b", b"2"), (b"z", b"1")])
    broker.maintain()
    assert broker.watermarks("sized", 0) == (7, 10)
    with broker.consumer() as c:
        c.assign("keys", [0])
        assert [(m.offset, m.key, m.value) for m in drain(c)] == [(2, b"a", b"2"), (3, b"b", b"2"), (4, b"z", b"1")]
