"""The exactly-once pipeline through the wire: transactional read-process-write workers
(confluent-kafka) killed with SIGKILL over and over; the read_committed output holds every
input exactly once."""
import os
import random
import signal
import subprocess
import sys
import time

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(__file__)


def read_all(bootstrap, topic, isolation, expect, timeout=60):
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}-{isolation}-{time.time()}",
                     "isolation.level": isolation, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, end, idle = [], time.time() + timeout, 0
    while time.time() < end:
        msgs = [m for m in c.consume(500, 0.5) if not m.error()]
        got += [m.value() for m in msgs]
        idle = idle + 1 if not msgs else 0
        if len(got) >= expect and idle >= 4:
            break
    c.close()
    return got


def test_exactly_once_pipeline_survives_sigkilled_workers(served, topic):
    n, kills = 3000, 6
    tin, tout, group = topic + "-in", topic + "-out", topic + "-eos"
    a = AdminClient({"bootstrap.servers": served.bootstrap})
    for f in a.create_topics([NewTopic(tin, 4, 1), NewTopic(tout, 4, 1)]).values():
        f.result()
    p = ck.Producer({"bootstrap.servers": served.bootstrap, "enable.idempotence": True})
    for i in range(n):
        p.produce(tin, key=str(i).encode(), value=f"rec-{i}".encode())
    assert p.flush(30) == 0

    def start(slot):
        return subprocess.Popen([sys.executable, os.path.join(HERE, "eos_worker.py"), served.bootstrap, str(slot), tin, tout, group],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    rng = random.Random(16)
    workers = {0: start(0), 1: start(1)}
    killed = 0
    deadline = time.time() + 120
    while killed < kills and time.time() < deadline:
        time.sleep(rng.uniform(1.0, 2.5))
        slot = rng.choice([0, 1])
        workers[slot].send_signal(signal.SIGKILL)
        workers[slot].wait()
        killed += 1
        workers[slot] = start(slot)
    # let the survivors finish the input
    c = ck.Consumer({"bootstrap.servers": served.bootstrap, "group.id": "probe-" + group})
    done_by = time.time() + 120
    while time.time() < done_by:
        committed = c.committed([ck.TopicPartition(tin, i) for i in range(4)], timeout=10)
        # the group's committed offsets (a transaction's offsets become committed only if it commits)
        offs = [tp.offset for tp in ck.Consumer({"bootstrap.servers": served.bootstrap, "group.id": group}).committed(
            [ck.TopicPartition(tin, i) for i in range(4)], timeout=10)]
        if sum(max(0, o) for o in offs) >= n:
            break
        time.sleep(1)
    c.close()
    for w in workers.values():
        w.send_signal(signal.SIGTERM)
        try:
            w.wait(30)
        except subprocess.TimeoutExpired:
            w.kill()
    assert killed == kills
    out = read_all(served.bootstrap, tout, "read_committed", n)
    want = {f"REC-{i}".encode() for i in range(n)}
    lost = want - set(out)
    duplicated = len(out) - len(set(out))
    print(f"exactly-once through the wire: {kills} SIGKILLs, {len(out)} committed outputs, lost {len(lost)}, duplicated {duplicated}")
    assert (len(lost), duplicated) == (0, 0)
    # read_uncommitted also sees what the killed workers wrote in transactions that were aborted
    raw = read_all(served.bootstrap, tout, "read_uncommitted", n)
    assert len(raw) >= len(out)
