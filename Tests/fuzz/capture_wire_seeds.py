"""Writes the seeds of the wire decoder's fuzz target (Tests/fuzz/wire_corpus): real request
frames, as confluent-kafka (librdkafka) and kafka-python send them to `kofka serve`, plus
hand-built ones from rawkafka.py (gzip batches, magic 0/1 message sets, transactional batches).

    python3 Tests/fuzz/capture_wire_seeds.py [KOFKA_CLI]

The server listens on 127.0.0.1 and advertises 127.0.0.3; a proxy on 127.0.0.3 at the same port
records every frame clients send (without its size prefix), up to two per (API, version)."""
import hashlib
import os
import socket
import struct
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "Tests", "wire"))
if len(sys.argv) > 1:
    os.environ["KOFKA_CLI"] = sys.argv[1]
import conftest  # noqa: E402
import rawkafka as rk  # noqa: E402

OUT = os.path.join(HERE, "wire_corpus")
seen = {}


def keep(frame):
    if len(frame) < 4:
        return
    api, ver = struct.unpack(">hh", frame[:4])
    if len(seen.setdefault((api, ver), [])) < 2:
        seen[(api, ver)].append(frame)


def pump(src, dst, record):
    buf = b""
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            dst.sendall(chunk)
            if record:
                buf += chunk
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">i", buf[:4])[0]:
                    n = struct.unpack(">i", buf[:4])[0]
                    keep(buf[4:4 + n])
                    buf = buf[4 + n:]
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(port):
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.3", port))
    lsock.listen(64)
    while True:
        c, _ = lsock.accept()
        s = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=pump, args=(c, s, True), daemon=True).start()
        threading.Thread(target=pump, args=(s, c, False), daemon=True).start()


def clients(bootstrap):
    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap})
    for f in a.create_topics([NewTopic("seeds", 2, 1)]).values():
        f.result(10)
    p = ck.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "compression.type": "gzip"})
    for i in range(20):
        p.produce("seeds", key=str(i).encode(), value=b"v" * i, headers=[("h", b"x")])
    p.flush(10)
    tp = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": "seed-tx"})
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "seed-g", "auto.offset.reset": "earliest",
                     "isolation.level": "read_committed", "enable.auto.commit": False})
    c.subscribe(["seeds"])
    got = []
    for _ in range(40):
        got += [m for m in c.consume(50, 0.2) if not m.error()]
        if len(got) >= 20:
            break
    tp.init_transactions(10)
    tp.begin_transaction()
    tp.produce("seeds", value=b"t")
    tp.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 10)
    tp.commit_transaction(10)
    c.commit(asynchronous=False)
    c.close()
    a.delete_records([ck.TopicPartition("seeds", 0, 1)]) if hasattr(a, "delete_records") else None
    try:
        import kafka
        from kafka.admin import KafkaAdminClient
        kp = kafka.KafkaProducer(bootstrap_servers=bootstrap)
        kp.send("seeds", b"kp", partition=0)
        kp.flush()
        kp.close()
        ka = KafkaAdminClient(bootstrap_servers=bootstrap)
        ka.list_groups()
        ka.describe_groups(["seed-g"])
        ka.close()
    except ImportError:
        pass


def hand_built():
    out = []
    for codec in (0, 1):
        batch = rk.record_batch([b"a", b"bb", b"ccc"], codec=codec)
        out.append(rk.frame(0, 3, 1, rk.produce_body("seeds", 0, batch))[4:])
    out.append(rk.frame(0, 3, 1, rk.produce_body("seeds", 0, rk.record_batch([b"t"], 7, 0, 0, True), transactional_id="x"))[4:])
    # Produce v2 with a magic 1 message (CRC-32)
    msg = struct.pack(">bbq", 1, 0, 0) + rk.nbytes(b"k") + rk.nbytes(b"v")
    import zlib
    m = struct.pack(">I", zlib.crc32(msg)) + msg
    out.append(rk.frame(0, 2, 1, rk.produce_body("seeds", 0, struct.pack(">qi", 0, len(m)) + m))[4:])
    out.append(rk.frame(18, 0, 1, b"")[4:])
    out.append(rk.frame(18, 99, 1, b"")[4:])
    return out


def main():
    with tempfile.TemporaryDirectory() as d:
        served = conftest.Served(os.path.join(d, "seeds.db"), extra=("--advertised-host", "127.0.0.3"))
        try:
            threading.Thread(target=proxy, args=(served.port,), daemon=True).start()
            clients(f"127.0.0.3:{served.port}")
        finally:
            served.stop()
    os.makedirs(OUT, exist_ok=True)
    frames = [f for v in seen.values() for f in v] + hand_built()
    for f in frames:
        name = hashlib.sha1(f).hexdigest()[:16]
        with open(os.path.join(OUT, name), "wb") as fh:
            fh.write(f)
    print(f"{len(frames)} seeds ({len(seen)} API versions from clients) in {OUT}")


if __name__ == "__main__":
    main()
