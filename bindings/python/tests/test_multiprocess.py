"""Two processes sharing one SQLite file form one broker."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import kofka
from conftest import PACKAGE_ROOT

PRODUCER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import kofka
    path = sys.argv[1]
    with kofka.Broker("sqlite:" + path) as broker:
        with broker.producer() as p:
            for i in range(500):
                p.send("mp", str(i).encode(), key=b"k%d" % (i % 7))
                if i % 100 == 99:
                    time.sleep(0.02)  # let the reader catch up mid-stream
    print("produced 500")
    """
)


def test_second_process_produces_500_records_consumed_here_as_they_arrive(tmp_path):
    db = str(tmp_path / "shared.db")
    with kofka.Broker("sqlite:" + db) as broker:
        broker.create_topic("mp", partitions=3)
        env = dict(os.environ)
        env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env["KOFKA_LIBRARY"] = kofka.library_path
        proc = subprocess.Popen(
            [sys.executable, "-c", PRODUCER_SCRIPT, db],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        got = []
        try:
            with broker.consumer() as c:
                c.assign("mp", [0, 1, 2])
                deadline = time.monotonic() + 45
                while len(got) < 500 and time.monotonic() < deadline:
                    got.extend(c.poll_batch(timeout=0.2))
                    if proc.poll() not in (None, 0):
                        break
                # nothing beyond the 500
                got.extend(c.poll_batch(timeout=0.1))
        finally:
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "produced 500"

        values = [int(m.value) for m in got]
        assert len(values) == 500
        assert set(values) == set(range(500))
        for part in range(3):
            msgs = [m for m in got if m.partition == part]
            # offsets dense from 0 and values in send order within the partition
            assert [m.offset for m in msgs] == list(range(len(msgs)))
            vals = [int(m.value) for m in msgs]
            assert vals == sorted(vals)
            assert all(m.key == b"k%d" % (int(m.value) % 7) for m in msgs)
            assert broker.watermarks("mp", part) == (0, len(msgs))


LOSSY_EOS_SCRIPT = textwrap.dedent(
    """
    import sys
    import kofka
    path, who, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with kofka.Broker("sqlite:" + path) as broker:
        with broker.producer(delivery="exactly-once", config={
                "fault.request.loss.rate": "0.2", "fault.ack.loss.rate": "0.2",
                "fault.seed": str(100 + who), "retry.backoff.ms": "0"}) as p:
            for i in range(n):
                p.send("eos-mp", b"%d-%d" % (who, i), key=b"%d-%d" % (who, i % 5))
    print("done")
    """
)


def test_two_exactly_once_producer_processes_on_lossy_links_write_every_record_exactly_once(tmp_path):
    db = str(tmp_path / "eos.db")
    n = 400
    with kofka.Broker("sqlite:" + db) as broker:
        broker.create_topic("eos-mp", partitions=3)
        env = dict(os.environ)
        env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env["KOFKA_LIBRARY"] = kofka.library_path
        procs = [subprocess.Popen([sys.executable, "-c", LOSSY_EOS_SCRIPT, db, str(who), str(n)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for who in (1, 2)]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert out.strip() == "done"
        with broker.consumer() as c:
            c.assign("eos-mp", [0, 1, 2])
            got = []
            while True:
                batch = c.poll_batch(timeout=0.2)
                if not batch:
                    break
                got.extend(batch)
        values = [m.value.decode() for m in got]
        expected = {"%d-%d" % (who, i) for who in (1, 2) for i in range(n)}
        lost = expected - set(values)
        duplicated = len(values) - len(set(values))
        print(f"two lossy exactly-once producer processes: {len(values)} records, lost {len(lost)}, duplicated {duplicated}")
        assert not lost and duplicated == 0
        assert set(values) == expected
        # order within a key's partition follows each producer's send order
        for who in (1, 2):
            for k in range(5):
                seq = [int(v.split("-")[1]) for v in values if v.startswith(f"{who}-") and int(v.split("-")[1]) % 5 == k]
                assert seq == sorted(seq)
