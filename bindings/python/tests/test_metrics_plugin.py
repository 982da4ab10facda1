"""The metrics plugin (libkofka_metrics.so, shipped beside libkofka.so) loaded by a Python
program with plugin.library.paths counts what the program did, in valid Prometheus text.

A plugin is loaded once per process and keeps the config of the first broker that names it, so
each case runs in a fresh Python process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import kofka
from prometheus_text import parse

SCRIPT = textwrap.dedent(
    """
    import sys, threading
    sys.path.insert(0, sys.argv[3])
    import kofka
    from kofka.storage import DictStorage
    kofka.register_storage("pydict", DictStorage)

    storage, path = sys.argv[1], sys.argv[2]
    config = {"plugin.library.paths": kofka.plugin_path("metrics"), "metrics.path": path,
              "metrics.interval.ms": 0}
    with kofka.Broker(storage, config=config) as b:
        b.create_topic("orders", partitions=3)
        b.create_topic("small", config={"max.message.bytes": 10})
        with b.producer() as p:
            for i in range(10):
                p.send("orders", b"value-%02d" % i, key=b"k%d" % i)        # 2 + 8 bytes each
            p.send_batch("orders", [(b"kb", b"batched")] * 10)                # 2 + 7 bytes each
            for i in range(10):
                p.produce("orders", b"produced")                           # 8 bytes each
            p.flush(10)
            for _ in range(2):
                try:
                    p.send("orders", b"x", partition=9)
                except kofka.UnknownPartitionError:
                    pass
            try:
                p.send("small", b"far too large for it")
            except kofka.MsgTooLargeError:
                pass
        with b.consumer(group_id='py "group"', enable_auto_commit=False) as c:
            c.subscribe("orders")
            n = 0
            while n < 30:
                n += len(c.poll_batch(timeout=1.0))
            c.commit()
    print("done", n)
    """
)


@pytest.mark.parametrize("backend", ["memory", "sqlite", "pydict"])
def test_the_metrics_plugin_counts_what_a_python_program_did(backend, tmp_path):
    plugin = kofka.plugin_path("metrics")
    assert plugin is not None, f"no libkofka_metrics.so beside {kofka.library_path}"
    storage = {"memory": "memory:", "sqlite": f"sqlite:{tmp_path}/k.db", "pydict": f"pydict:{tmp_path}"}[backend]
    path = str(tmp_path / "kofka.prom")
    env = dict(os.environ, KOFKA_LIBRARY=kofka.library_path)
    package = os.path.dirname(os.path.dirname(os.path.abspath(kofka.__file__)))
    run = subprocess.run([sys.executable, "-c", SCRIPT, storage, path, package], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "done 30"
    with open(path, encoding="utf-8") as f:
        text = f.read()

    doc = parse(text)   # strict: raises naming the line and the rule
    orders = {"topic": "orders"}
    assert doc.value("kofka_sent_records_total", **orders) == 32
    assert doc.value("kofka_sent_records_total", topic="small") == 1
    assert doc.value("kofka_produced_records_total", **orders) == 30
    assert doc.value("kofka_produced_bytes_total", **orders) == 10 * 10 + 10 * 9 + 10 * 8
    assert doc.value("kofka_delivery_failures_total", topic="orders", error="KOFKA_ERR_UNKNOWN_PARTITION") == 2
    assert doc.value("kofka_delivery_failures_total", topic="small", error="KOFKA_ERR_MSG_TOO_LARGE") == 1
    assert doc.value("kofka_consumed_records_total", **orders) == 30
    assert doc.value("kofka_consumed_bytes_total", **orders) == 10 * 10 + 10 * 9 + 10 * 8
    assert doc.value("kofka_commits_total", group='py "group"', topic="orders") == 3
    assert doc.total("kofka_commit_failures_total") == 0
    assert doc.value("kofka_produce_latency_seconds_count", **orders) == 30
    assert doc.value("kofka_produce_latency_seconds_sum", **orders) > 0

    try:  # the reference parser too, where it is installed
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["kofka_produce_latency_seconds"].type == "histogram"
    commits = [s for s in families["kofka_commits"].samples if s.name == "kofka_commits_total"]
    assert [(s.labels, s.value) for s in commits] == [({"group": 'py "group"', "topic": "orders"}, 3.0)]


def test_an_unknown_metrics_key_is_refused_by_the_plugin(tmp_path):
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import kofka\n"
        "try:\n"
        "    kofka.Broker(config={'plugin.library.paths': kofka.plugin_path('metrics'), 'metrics.nope': 1})\n"
        "except kofka.InvalidConfigError as e:\n"
        "    print('refused:', e.message)\n"
    )
    package = os.path.dirname(os.path.dirname(os.path.abspath(kofka.__file__)))
    run = subprocess.run([sys.executable, "-c", code, package], env=dict(os.environ, KOFKA_LIBRARY=kofka.library_path),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "refused:" in run.stdout and "metrics.nope" in run.stdout
