"""Shared fixtures: every broker-level test runs on three storage backends: the library's two
(``memory:``, ``sqlite:``) and ``pydict:``, the package's pure-Python reference backend
(:class:`kofka.storage.DictStorage`) behind the C storage protocol, through ctypes callbacks;
and on a fourth, PostgreSQL (the plugin ``libkofka_postgresql.so`` beside ``libkofka.so``), when
the environment variable ``KOFKA_PG_URL`` names a server."""

from __future__ import annotations

import os
import sys
from typing import Callable, Dict, List, Optional

import pytest

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # bindings/python
if PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, PACKAGE_ROOT)

import kofka  # noqa: E402
from kofka.storage import DictStorage, registered_schemes  # noqa: E402

# Process-wide, once: every test below may open "pydict:..." brokers.
if "pydict" not in registered_schemes():
    kofka.register_storage("pydict", DictStorage)


TEST_DEADLINE_S = float(os.environ.get("KOFKA_TEST_DEADLINE_S", "60"))
_report_file = None


def pytest_configure(config):
    """Keep a handle on the real stderr (output capture is paused here)."""
    global _report_file
    _report_file = os.fdopen(os.dup(2), "w")


@pytest.fixture(autouse=True)
def _deadline(request):
    """A hung library call must fail the run loudly, not hang it: after
    TEST_DEADLINE_S seconds in one test, print every thread's stack and exit."""
    import faulthandler

    out = _report_file or sys.stderr
    armed = True
    try:
        out.write("")
        out.flush()
        faulthandler.dump_traceback_later(TEST_DEADLINE_S, exit=True, file=out)
    except (ValueError, OSError, AttributeError):
        armed = False
    try:
        yield
    finally:
        if armed:
            faulthandler.cancel_dump_traceback_later()


PG_URL = os.environ.get("KOFKA_PG_URL") or None
"""A PostgreSQL server (scripts/pg.sh starts a throwaway one): its storage joins the params."""

_pg_counter = [0]


def pg_exec(sql: str) -> None:
    """Runs one statement on KOFKA_PG_URL through libpq (ctypes: no driver needed)."""
    import ctypes

    pq = ctypes.CDLL("libpq.so.5")
    pq.PQconnectdb.restype = ctypes.c_void_p
    pq.PQconnectdb.argtypes = [ctypes.c_char_p]
    pq.PQexec.restype = ctypes.c_void_p
    pq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    pq.PQclear.argtypes = [ctypes.c_void_p]
    pq.PQfinish.argtypes = [ctypes.c_void_p]
    pq.PQstatus.argtypes = [ctypes.c_void_p]
    conn = pq.PQconnectdb(PG_URL.encode())
    try:
        if pq.PQstatus(conn) == 0:
            for statement in ("SET client_min_messages TO warning", sql):
                pq.PQclear(pq.PQexec(conn, statement.encode()))
    finally:
        pq.PQfinish(conn)


def pg_storage(tag: str):
    """A storage string for a fresh schema of the PostgreSQL database, and its schema."""
    _pg_counter[0] += 1
    schema = "kp_%s_%d_%d" % (tag, os.getpid(), _pg_counter[0])
    sep = "&" if "?" in PG_URL else "?"
    return PG_URL + sep + "options=-csearch_path%3D" + schema, schema


@pytest.fixture(params=["memory", "sqlite", "pydict"] + (["postgresql"] if PG_URL else []))
def storage(request: pytest.FixtureRequest, tmp_path) -> str:
    """The storage string: "memory:", "sqlite:<tmp file>", "pydict:<tmp path>" or, when
    KOFKA_PG_URL is set, "postgresql://…" on a fresh schema (a store of its own for each test,
    shared by every broker the test opens on it, as a SQLite file is; the schema is dropped
    after the test)."""
    if request.param == "memory":
        return "memory:"
    if request.param == "pydict":
        return "pydict:" + str(tmp_path)
    if request.param == "postgresql":
        url, schema = pg_storage("py")
        request.addfinalizer(lambda: pg_exec('DROP SCHEMA IF EXISTS "%s" CASCADE' % schema))
        return url
    return "sqlite:" + str(tmp_path / "kofka.db")


@pytest.fixture
def broker(storage: str):
    """A broker on each backend, closed after the test."""
    b = kofka.Broker(storage)
    try:
        yield b
    finally:
        b.close()


def drain(consumer: "kofka.Consumer", idle: float = 0.2, limit: Optional[int] = None) -> List["kofka.Message"]:
    """Poll until a poll of `idle` seconds returns nothing (or `limit` messages were read)."""
    out: List[kofka.Message] = []
    while limit is None or len(out) < limit:
        batch = consumer.poll_batch(timeout=idle)
        if not batch:
            break
        out.extend(batch)
    return out


def by_partition(msgs: List["kofka.Message"]) -> Dict[int, List["kofka.Message"]]:
    """Messages grouped by partition, in the order received."""
    parts: Dict[int, List[kofka.Message]] = {}
    for m in msgs:
        parts.setdefault(m.partition, []).append(m)
    return parts


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as unsigned 32 bits."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = data[4 * i] | (data[4 * i + 1] << 8) | (data[4 * i + 2] << 16) | (data[4 * i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length & ~3
    extra = length % 4
    if extra == 3:
        h ^= data[rest + 2] << 16
    if extra >= 2:
        h ^= data[rest + 1] << 8
    if extra >= 1:
        h ^= data[rest]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@pytest.fixture
def poll_until() -> Callable:
    """poll_until(consumer, predicate(msgs) -> bool, timeout) -> msgs read so far."""

    import time

    def run(consumer: "kofka.Consumer", done: Callable[[List["kofka.Message"]], bool], timeout: float = 10.0):
        msgs: List[kofka.Message] = []
        deadline = time.monotonic() + timeout
        while not done(msgs) and time.monotonic() < deadline:
            msgs.extend(consumer.poll_batch(timeout=0.1))
        return msgs

    return run
