"""A minimal Kafka protocol client for tests that must send exactly the bytes they mean:
hand-built frames, bad input, pipelining, retried batches. Non-flexible versions only."""
import socket
import struct
import time
import zlib

_CRC32C = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(v: int) -> bytes:
    u = (v << 1) ^ (v >> 63)
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def string(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def nbytes(b):
    if b is None:
        return struct.pack(">i", -1)
    return struct.pack(">i", len(b)) + b


def array(items):
    return struct.pack(">i", len(items)) + b"".join(items)


def record_batch(values, producer_id=-1, epoch=-1, base_seq=-1, transactional=False, codec=0, corrupt_crc=False):
    recs = b""
    for i, v in enumerate(values):
        body = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        recs += varint(len(body)) + body
    if codec == 1:
        c = zlib.compressobj(wbits=31)
        recs = c.compress(recs) + c.flush()
    now = int(time.time() * 1000)
    attrs = codec | (0x10 if transactional else 0)
    after_crc = (struct.pack(">hiqqqhii", attrs, len(values) - 1, now, now, producer_id, epoch, base_seq, len(values)) + recs)
    crc = crc32c(after_crc) ^ (1 if corrupt_crc else 0)
    after_len = struct.pack(">ib", -1, 2) + struct.pack(">I", crc) + after_crc
    return struct.pack(">qi", 0, len(after_len)) + after_len


def frame(api, version, correlation, body, client_id="rawkafka"):
    payload = struct.pack(">hhi", api, version, correlation) + string(client_id) + body
    return struct.pack(">i", len(payload)) + payload


def produce_body(topic, partition, batch, acks=-1, transactional_id=None):
    return string(transactional_id) + struct.pack(">hi", acks, 5000) + array([
        string(topic) + array([struct.pack(">i", partition) + nbytes(batch)])])


class Conn:
    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.correlation = 0

    def close(self):
        self.s.close()

    def send_raw(self, data: bytes):
        self.s.sendall(data)

    def read_frame(self):
        head = self._read(4)
        if head is None:
            return None
        (n,) = struct.unpack(">i", head)
        return self._read(n)

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def request(self, api, version, body):
        self.correlation += 1
        self.send_raw(frame(api, version, self.correlation, body))
        resp = self.read_frame()
        assert resp is not None, "connection closed"
        (cid,) = struct.unpack(">i", resp[:4])
        assert cid == self.correlation, (cid, self.correlation)
        return resp[4:]

    def api_versions(self, version=0):
        return self.request(18, version, b"")

    def produce(self, topic, partition, batch, acks=-1, transactional_id=None):
        """Produce v3; returns (error_code, base_offset)."""
        r = self.request(0, 3, produce_body(topic, partition, batch, acks, transactional_id))
        # responses: [topic: string, [partition int32, error int16, base_offset int64, log_append_time int64]], throttle
        pos = 4
        (tl,) = struct.unpack(">h", r[pos:pos + 2]); pos += 2 + tl
        pos += 4
        _p, err, base = struct.unpack(">ihq", r[pos:pos + 14])
        return err, base

    def init_producer_id(self):
        r = self.request(22, 0, string(None) + struct.pack(">i", 60000))
        _thr, err, pid, epoch = struct.unpack(">ihqh", r[:16])
        return err, pid, epoch

    def create_topic(self, topic, partitions=1):
        body = array([string(topic) + struct.pack(">ih", partitions, 1) + array([]) + array([])]) + struct.pack(">i", 5000)
        r = self.request(19, 0, body)
        pos = 4
        (tl,) = struct.unpack(">h", r[pos:pos + 2]); pos += 2 + tl
        (err,) = struct.unpack(">h", r[pos:pos + 2])
        return err

    def list_offsets(self, topic, partition, ts=-1):
        body = struct.pack(">i", -1) + array([string(topic) + array([struct.pack(">iq", partition, ts)])])
        r = self.request(2, 1, body)
        pos = 4
        (tl,) = struct.unpack(">h", r[pos:pos + 2]); pos += 2 + tl + 4
        _p, err, _ts, off = struct.unpack(">ihqq", r[pos:pos + 22])
        return err, off

    def send_request(self, api, version, body):
        """Sends one request without waiting; returns its correlation id (pipelining)."""
        self.correlation += 1
        self.send_raw(frame(api, version, self.correlation, body))
        return self.correlation

    def read_response(self):
        """The next response frame as (correlation id, body), or None when the server closed."""
        resp = self.read_frame()
        if resp is None:
            return None
        (cid,) = struct.unpack(">i", resp[:4])
        return cid, resp[4:]

    def closed_by_server(self, timeout=5):
        """True when the server closes the connection (EOF) within `timeout` s, sending nothing."""
        self.s.settimeout(timeout)
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def fetch(self, topic, partition, offset, max_wait_ms=0, min_bytes=1, isolation=0):
        """Fetch v4; returns (error_code, high_watermark, [(offset, key, value)]) (control batches skipped)."""
        body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, 1 << 20, isolation) + array([
            string(topic) + array([struct.pack(">iqi", partition, offset, 1 << 20)])])
        return parse_fetch_v4(self.request(1, 4, body))


def fetch_body_v4(topic, partition, offset, max_wait_ms=0, min_bytes=1):
    return struct.pack(">iiiib", -1, max_wait_ms, min_bytes, 1 << 20, 0) + array([
        string(topic) + array([struct.pack(">iqi", partition, offset, 1 << 20)])])


class _Reader:
    def __init__(self, b, pos=0):
        self.b, self.pos = b, pos

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.pos)
        self.pos += struct.calcsize(fmt)
        return v if len(v) > 1 else v[0]

    def varint(self):
        shift = u = 0
        while True:
            c = self.b[self.pos]; self.pos += 1
            u |= (c & 0x7F) << shift
            if not c & 0x80:
                return (u >> 1) ^ -(u & 1)
            shift += 7

    def varbytes(self):
        n = self.varint()
        if n < 0:
            return None
        v = self.b[self.pos:self.pos + n]; self.pos += n
        return v


def parse_record_batches(data):
    """[(offset, key, value)] of the data batches in `data` (RecordBatch v2, uncompressed)."""
    out, pos = [], 0
    while pos + 61 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + length
        if end > len(data):
            break   # a partial batch at the end of a Fetch response
        attrs = struct.unpack_from(">h", data, pos + 21)[0]
        assert crc32c(data[pos + 21:end]) == struct.unpack_from(">I", data, pos + 17)[0], "CRC-32C of a fetched batch"
        (count,) = struct.unpack_from(">i", data, pos + 57)
        if not attrs & 0x20:
            r = _Reader(data, pos + 61)
            for _ in range(count):
                n = r.varint(); nxt = r.pos + n
                r.take(">b"); r.varint(); delta = r.varint()
                key = r.varbytes(); value = r.varbytes()
                out.append((base + delta, key, value))
                r.pos = nxt
        pos = end
    return out


def parse_fetch_v4(r):
    rd = _Reader(r)
    rd.take(">i")   # throttle
    assert rd.take(">i") == 1
    (tl,) = [rd.take(">h")]; rd.pos += tl
    assert rd.take(">i") == 1
    _p, err, hw, _lso = rd.take(">ihqq")
    na = rd.take(">i")
    rd.pos += 16 * max(na, 0)
    n = rd.take(">i")
    data = r[rd.pos:rd.pos + max(n, 0)]
    return err, hw, parse_record_batches(data)


def api_versions_v0(body):
    """(error_code, {api_key: (min, max)}) of an ApiVersions v0 response body, which must end there."""
    rd = _Reader(body)
    err = rd.take(">h")
    n = rd.take(">i")
    keys = {}
    for _ in range(n):
        k, lo, hi = rd.take(">hhh")
        keys[k] = (lo, hi)
    assert rd.pos == len(body), f"{len(body) - rd.pos} bytes after a v0 ApiVersions response"
    return err, keys
