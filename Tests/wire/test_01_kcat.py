"""kcat (librdkafka from Debian) against `kofka serve`: metadata, produce, consume, gzip."""
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (Tests/wire/run.sh installs it)")


def kcat(served, *args, input=None, timeout=30):
    return subprocess.run(["kcat", "-b", served.bootstrap, *args], input=input, capture_output=True, text=True, timeout=timeout)


def test_kcat_metadata_lists_the_one_broker_and_topics(served, topic):
    r = kcat(served, "-P", "-t", topic, input="x\n")
    assert r.returncode == 0, r.stderr
    r = kcat(served, "-L")
    assert r.returncode == 0, r.stderr
    assert "1 brokers:" in r.stdout
    assert f"broker 0 at {served.bootstrap} (controller)" in r.stdout
    assert f'topic "{topic}" with 1 partitions' in r.stdout


def test_kcat_produces_and_consumes_exact_offsets(served, topic):
    lines = [f"line-{i}" for i in range(500)]
    r = kcat(served, "-P", "-t", topic, "-p", "0", input="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    r = kcat(served, "-C", "-t", topic, "-e", "-f", "%o %s\n")
    assert r.returncode == 0, r.stderr
    got = [l.split(" ", 1) for l in r.stdout.splitlines()]
    assert [int(o) for o, _ in got] == list(range(500))
    assert [v for _, v in got] == lines


def test_kcat_gzip_batches_are_accepted_and_read_back(served, topic):
    lines = [f"gz-{i}" * 20 for i in range(300)]
    r = kcat(served, "-P", "-t", topic, "-z", "gzip", "-X", "debug=msg", input="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    assert "gzip)" in r.stderr and "not compressing" not in r.stderr, "librdkafka did not send gzip batches"
    r = kcat(served, "-C", "-t", topic, "-e", "-f", "%s\n")
    assert r.stdout.splitlines() == lines


def test_kcat_snappy_is_refused_with_unsupported_compression_type(served, topic):
    # librdkafka sends a batch uncompressed when compressing does not make it smaller: send text that compresses.
    r = kcat(served, "-P", "-t", topic, "-z", "snappy", "-X", "message.timeout.ms=3000", "-X", "retries=0",
             input="\n".join(["a" * 200] * 50) + "\n")
    assert "Unsupported compression type" in r.stderr, r.stderr
    r = kcat(served, "-C", "-t", topic, "-e", "-f", "%s\n")
    assert r.stdout.splitlines() == []


def test_kcat_keys_and_headers_round_trip(served, topic):
    r = kcat(served, "-P", "-t", topic, "-K", ":", "-H", "h1=v1", input="k1:v1\nk2:v2\n")
    assert r.returncode == 0, r.stderr
    r = kcat(served, "-C", "-t", topic, "-e", "-f", "%k=%s %h\n")
    assert r.stdout.splitlines() == ["k1=v1 h1=v1", "k2=v2 h1=v1"]
