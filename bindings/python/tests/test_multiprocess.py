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
