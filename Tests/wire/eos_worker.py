"""A read-process-write worker (confluent-kafka, exactly-once): consumes `in` in group `eos`
with read_committed, writes each value upper-cased to `out` in a transaction that also
carries the consumer's offsets (send_offsets_to_transaction, KIP-447 group metadata).
Usage: eos_worker.py BOOTSTRAP SLOT IN OUT GROUP. Runs until killed or idle for 20 s."""
import sys
import time

import confluent_kafka as ck

bootstrap, slot, topic_in, topic_out, group = sys.argv[1:6]
consumer = ck.Consumer({
    "bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
    "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
})
producer = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{group}-worker-{slot}", "linger.ms": 5})
producer.init_transactions(30)
consumer.subscribe([topic_in])
idle_since = time.time()
while time.time() - idle_since < 20:
    msgs = consumer.consume(50, 0.5)
    msgs = [m for m in msgs if not m.error()]
    if not msgs:
        continue
    idle_since = time.time()
    producer.begin_transaction()
    for m in msgs:
        producer.produce(topic_out, key=m.key(), value=m.value().upper())
    producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
    try:
        producer.commit_transaction(30)
    except ck.KafkaException as e:
        if e.args[0].txn_requires_abort():
            producer.abort_transaction(30)
            # start over from the committed offsets
            consumer.close()
            sys.exit(3)
        raise
    print(f"committed {len(msgs)}", flush=True)
consumer.close()
