"""Consumer.poll() crosses into the library once per batch (``kofka_poll_lend``): the library
lends records, poll() hands them out one at a time, and only what was handed out counts as
returned — for position(), commit(), close(), a transaction's offsets and a process that dies.
These tests count lost, duplicated and reordered records across every way of mixing the calls."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import kofka
from conftest import PACKAGE_ROOT


def fill(broker, n, partitions=1):
    broker.create_topic("t", partitions=partitions)
    with broker.producer() as p:
        for part in range(partitions):
            for i in range(n):
                p.produce("t", b"%d" % i, partition=part)
        p.flush()


def offsets_until_idle(c):
    """Offsets from poll() per record until a poll of 0.3 s returns nothing."""
    out = []
    while True:
        m = c.poll(0.3)
        if m is None:
            return out
        out.append(m.offset)


def test_position_and_commit_count_exactly_the_records_poll_returned(broker):
    fill(broker, 100)
    with broker.consumer(group_id="g") as c:
        c.assign("t", 0)
        got = [c.poll(1.0).offset for _ in range(7)]   # one lend holds far more than 7
        assert got == list(range(7))
        assert c.position("t", 0) == 7
        c.commit()
        assert c.committed("t", 0) == 7
        assert c.poll(1.0).offset == 7, "settling for position() and commit() skipped nothing"


def test_close_commits_what_poll_returned_and_the_next_member_starts_right_after_it(broker):
    fill(broker, 100)
    c = broker.consumer(group_id="g")
    c.subscribe("t")
    first = [c.poll(1.0).offset for _ in range(30)]
    c.close()
    with broker.consumer(group_id="g") as nxt:
        nxt.subscribe("t")
        rest = offsets_until_idle(nxt)
    assert first + rest == list(range(100)), "nothing lost, nothing twice"


def test_send_offsets_to_transaction_counts_what_poll_returned(broker):
    fill(broker, 50)
    c = broker.consumer(group_id="eos", delivery="exactly-once")
    c.subscribe("t")
    assert [c.poll(1.0).offset for _ in range(12)] == list(range(12))
    with broker.producer(transactional_id="lend-py", delivery="exactly-once") as p:
        p.init_transactions()
        p.begin_transaction()
        p.send_offsets_to_transaction(c)
        p.commit_transaction()
    assert c.committed("t", 0) == 12
    c.destroy()


def test_at_most_once_poll_commits_each_record_before_returning_it(broker):
    fill(broker, 10)
    with broker.consumer(group_id="g", delivery="at-most-once") as c:
        c.assign("t", 0)
        for i in range(4):
            assert c.poll(1.0).offset == i
            assert c.committed("t", 0) == i + 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_record_once_in_order_whatever_mix_of_poll_poll_batch_seek_and_commit(broker, seed):
    fill(broker, 600, partitions=2)
    rng = random.Random(seed)
    seen = {0: [], 1: []}
    with broker.consumer(group_id="g", max_poll_records=50, queued_min_messages=17) as c:
        c.assign("t", [0, 1])
        idle = 0
        while idle < 3:
            r = rng.random()
            if r < 0.6:
                got = [m for m in [c.poll(0.2)] if m is not None]
            elif r < 0.8:
                got = c.poll_batch(0.2, max=rng.randint(1, 9))
            elif r < 0.9:
                part = rng.randint(0, 1)
                c.seek("t", part, c.position("t", part) if c.position("t", part) >= 0 else 0)
                got = []
            else:
                c.commit()
                got = []
            for m in got:
                seen[m.partition].append(m.offset)
            idle = idle + 1 if (r < 0.8 and not got) else 0
        assert seen[0] == list(range(600)) and seen[1] == list(range(600))
        assert c.position("t", 0) == 600 and c.position("t", 1) == 600


def test_two_threads_polling_one_consumer_get_every_record_exactly_once(broker):
    fill(broker, 3000)
    got = [[], []]
    with broker.consumer(group_id="g") as c:
        c.assign("t", 0)

        def run(i):
            while True:
                m = c.poll(0.3)
                if m is None:
                    return
                got[i].append(m.offset)

        ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert sorted(got[0] + got[1]) == list(range(3000))
        assert got[0] == sorted(got[0]) and got[1] == sorted(got[1])


def test_a_close_on_another_thread_does_not_wait_for_a_poll_waiting_for_records(broker):
    broker.create_topic("t")
    c = broker.consumer(group_id="g")
    c.assign("t", 0)
    waiting = threading.Event()
    ended = []

    def poll():
        waiting.set()
        try:
            ended.append(c.poll(10.0))
        except kofka.ClosedError as e:   # the next slice of the wait finds the consumer closed
            ended.append(e)

    t = threading.Thread(target=poll)
    t.start()
    waiting.wait(2.0)
    time.sleep(0.2)   # the poll waits inside the library
    t0 = time.monotonic()
    c.close()
    assert time.monotonic() - t0 < 1.0, "close waited for the poll"
    t.join(2.0)
    assert not t.is_alive(), "the waiting poll did not return once the consumer closed"
    assert ended and (ended[0] is None or isinstance(ended[0], kofka.ClosedError))


CONSUMER_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import kofka
    with kofka.Broker("sqlite:" + sys.argv[1]) as b:
        c = b.consumer(group_id="g")
        c.subscribe("t")
        for _ in range(int(sys.argv[2])):
            m = c.poll(5.0)
            sys.stdout.write("%d\\n" % m.offset)
            sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)   # dies holding lent records it never handed out
    """
)


@pytest.mark.parametrize("handed", [1, 250, 499, 501])
def test_a_consumer_process_killed_mid_lend_loses_nothing_it_had_not_handed_out(tmp_path, handed):
    db = str(tmp_path / "kill.db")
    with kofka.Broker("sqlite:" + db) as b:
        fill(b, 1000)
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["KOFKA_LIBRARY"] = kofka.library_path
    proc = subprocess.run([sys.executable, "-c", CONSUMER_SCRIPT, db, str(handed)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    before = [int(x) for x in proc.stdout.split()]
    assert before == list(range(handed))
    with kofka.Broker("sqlite:" + db) as b:
        with b.consumer(group_id="g", session_timeout_ms=6000) as c:
            committed = c.committed("t", 0)
            assert committed <= handed, "a record that was never handed out was committed (-1: none)"
            c.assign("t", 0)
            after = offsets_until_idle(c)
    assert after == list(range(max(committed, 0), 1000))
    assert set(before) | set(after) == set(range(1000)), "nothing lost"


def test_a_rebalance_while_poll_holds_a_lend_loses_nothing_at_least_once(broker):
    """A holds lent records of every partition when B joins the group; both then poll per
    record to the end. The lend window makes A call in for its heartbeat, learn of the
    rebalance and settle: every record is handed out at least once (at-least-once), and a
    record handed out twice was re-read from a committed offset, never skipped."""
    fill(broker, 400, partitions=4)
    cfg = dict(group_id="rb", session_timeout_ms=3000, max_poll_records=500)
    a = broker.consumer(**cfg)
    a.subscribe("t")
    seen = []
    for _ in range(50):   # A's first lend holds far more than 50
        m = a.poll(2.0)
        seen.append((m.partition, m.offset))
    b = broker.consumer(**cfg)
    b.subscribe("t")
    idle = 0
    while idle < 20:
        got = False
        for c in (a, b):
            m = c.poll(0.05)
            if m is not None:
                seen.append((m.partition, m.offset))
                got = True
        idle = 0 if got else idle + 1
    a.close()
    b.close()
    assert set(seen) == {(p, o) for p in range(4) for o in range(400)}, "nothing lost"
