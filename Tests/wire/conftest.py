"""Fixtures for the wire-protocol tests: a `kofka serve` process on a fresh SQLite file
(the command line, as an operator starts it), real Kafka clients pointed at it."""
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.environ.get("KOFKA_CLI", os.path.join(ROOT, ".build", "debug", "kofka-cli"))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("KOFKA_LIBRARY", os.path.join(ROOT, ".build", "debug", "libkofka.so"))


class Served:
    """A running `kofka serve`: its storage string, port and process."""

    def __init__(self, db, extra=()):
        self.db = db
        self.storage = f"sqlite:{db}"
        self.log = db + ".log"
        self.proc = subprocess.Popen([CLI, "serve", "--storage", self.storage, "--listen", "127.0.0.1:0",
                                      "-X", "sqlite.synchronous=normal", *extra],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT, text=True)
        line = ""
        end = time.time() + 30
        while time.time() < end and "listening on" not in line:
            time.sleep(0.05)
            line = open(self.log).read()
        m = re.search(r"listening on [^ ]+:(\d+)", line)
        assert m, f"kofka serve did not start: {line!r}"
        self.port = int(m.group(1))
        self.bootstrap = f"127.0.0.1:{self.port}"

    def stop(self):
        assert self.proc.poll() is None, f"kofka serve died (exit {self.proc.returncode}): {open(self.log).read()[-3000:]}"
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self):
        return self.proc.poll() is None


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = Served(str(tmp_path_factory.mktemp("wire") / "serve.db"))
    yield s
    s.stop()


@pytest.fixture
def topic():
    return "t-" + uuid.uuid4().hex[:10]


def wait_until(cond, timeout=20.0, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()
