"""Kofka for Python: Kafka's delivery semantics as an embeddable library.

A thin ctypes wrapper over ``libkofka.so`` (the C ABI in ``include/kofka.h``).
All behaviour (delivery modes, retries, deduplication, transactions, groups)
lives in the library; this package only converts Python values and raises
Python exceptions.

>>> import kofka
>>> with kofka.Broker() as broker:                       # "memory:" storage
...     broker.create_topic("orders", partitions=3)
...     with broker.producer(delivery="at-least-once") as p:
...         md = p.send("orders", b"value", key=b"k")      # RecordMetadata
...     with broker.consumer(group_id="billing") as c:
...         c.subscribe(["orders"])
...         msgs = c.poll_batch(timeout=1.0)               # [Message, ...]

Conventions:

* Timeouts are seconds as floats; ``None`` waits forever.
* Keyword arguments become config keys with ``_`` replaced by ``.``
  (``group_id`` -> ``group.id``); ``delivery`` is short for
  ``delivery.mode``. ``config={...}`` passes keys verbatim. Values become
  strings (``True`` -> ``"true"``); a value of ``None`` leaves the key unset.
* Keys, values and header values are ``bytes`` (``str`` is encoded as UTF-8;
  ``bytearray`` and ``memoryview`` are accepted); ``None`` means absent.
* Failures raise :class:`KofkaError` or its subclass for the code.
"""

from __future__ import annotations

import array
import ctypes
import itertools
import math
import os
import threading
import time
import weakref
from contextlib import contextmanager
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from . import _ffi

__all__ = [
    "Broker",
    "Server",
    "Producer",
    "Consumer",
    "RecordMetadata",
    "Message",
    "KofkaError",
    "InvalidArgError",
    "InvalidConfigError",
    "InvalidStateError",
    "UnknownTopicError",
    "UnknownPartitionError",
    "TopicExistsError",
    "MsgTooLargeError",
    "OffsetOutOfRangeError",
    "NoOffsetError",
    "TimedOutError",
    "StorageError",
    "OutOfOrderSequenceError",
    "ProducerFencedError",
    "TxnTimedOutError",
    "RebalancedError",
    "ClosedError",
    "UnsupportedError",
    "QueueFullError",
    "BusyError",
    "PurgedError",
    "RetriableError",
    "is_retriable",
    "PARTITION_ANY",
    "ProducerRecord",
    "interceptor_errors",
    "register_storage",
    "plugin_path",
    "library_path",
    "__version__",
]

_raw_lib, library_path = _ffi.load()
"""The path libkofka.so was loaded from."""
_lib = _ffi.bind(_raw_lib, library_path)

__version__: str = _lib.kofka_version().decode("utf-8", "replace")
"""The version of the loaded libkofka.so (``kofka_version()``)."""

def plugin_path(name: str) -> Optional[str]:
    """The path of the plugin library ``libkofka_NAME.so`` shipped beside the loaded
    ``libkofka.so`` (``"metrics"``: the metrics interceptors; ``"lmdb"``: the LMDB storage), or
    None when there is no such file. Give it to a broker as ``plugin.library.paths``::

        kofka.Broker(config={"plugin.library.paths": kofka.plugin_path("metrics"),
                             "metrics.path": "/var/lib/node_exporter/kofka.prom"})
    """
    if os.sep not in library_path:   # found by name on the system library path: its folder is unknown
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(library_path)), f"libkofka_{name}.so")
    return path if os.path.isfile(path) else None


PARTITION_ANY: int = _ffi.KOFKA_PARTITION_ANY
"""Lets the partitioner choose the partition (``KOFKA_PARTITION_ANY``)."""

# Long or infinite waits are cut into slices of this many milliseconds so
# that Ctrl-C (KeyboardInterrupt) is noticed between library calls.
_SLICE_MS = 200
_INT_MAX = 2**31 - 1

_T = TypeVar("_T", bound="_Closing")
Bytesish = Union[bytes, bytearray, memoryview, str]
Headers = Union[Sequence[Tuple[str, Optional[Bytesish]]], Mapping[str, Optional[Bytesish]]]

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class KofkaError(Exception):
    """A Kofka call failed.

    Attributes:
        code: the numeric ``kofka_err`` code.
        name: its name, e.g. ``"KOFKA_ERR_PRODUCER_FENCED"``.
        message: the library's detailed message (``kofka_last_error()``), or
            the code's description when the library gave none.
    """

    code: int
    name: str
    message: str

    def __init__(self, code: Union[int, str], message: Optional[str] = None) -> None:
        if isinstance(code, str) and message is None:
            # BusyError("the store is locked"): a subclass knows its own code.
            fixed = _CODES.get(type(self))
            if fixed is None:
                raise TypeError(f"{type(self).__name__} needs a code: {type(self).__name__}(code, message)")
            code, message = fixed, code
        self.code = int(code)
        self.name = _lib.kofka_err_name(self.code).decode("utf-8", "replace")
        if not message:
            message = _lib.kofka_err_desc(self.code).decode("utf-8", "replace")
        self.message = message
        super().__init__(f"{self.name}: {message}")

    def __reduce__(self) -> Any:
        return (_error_for, (self.code, self.message))

    @property
    def is_retriable(self) -> bool:
        """True when repeating the same call may succeed (``kofka_err_is_retriable``):
        :class:`BusyError`, :class:`TimedOutError`, :class:`QueueFullError`."""
        return is_retriable(self.code)


def is_retriable(code: int) -> bool:
    """True when a call that failed with ``code`` may succeed if repeated
    (``kofka_err_is_retriable``: BUSY, TIMED_OUT, QUEUE_FULL); False for other codes."""
    return bool(_raw(_lib.kofka_err_is_retriable, int(code)))


class RetriableError(KofkaError):
    """Base of the errors after which the same call may succeed if repeated."""


class InvalidArgError(KofkaError):
    """KOFKA_ERR_INVALID_ARG: a NULL pointer, negative size, bad name or unknown storage scheme."""


class InvalidConfigError(KofkaError):
    """KOFKA_ERR_INVALID_CONFIG: unknown config key, invalid value or contradiction."""


class InvalidStateError(KofkaError):
    """KOFKA_ERR_INVALID_STATE: the call is not allowed in the object's current state."""


class UnknownTopicError(KofkaError):
    """KOFKA_ERR_UNKNOWN_TOPIC: the topic does not exist (and was not auto-created)."""


class UnknownPartitionError(KofkaError):
    """KOFKA_ERR_UNKNOWN_PARTITION: the topic has no such partition."""


class TopicExistsError(KofkaError):
    """KOFKA_ERR_TOPIC_EXISTS: create_topic on an existing topic."""


class MsgTooLargeError(KofkaError):
    """KOFKA_ERR_MSG_TOO_LARGE: key + value + headers exceed message.max.bytes."""


class OffsetOutOfRangeError(KofkaError):
    """KOFKA_ERR_OFFSET_OUT_OF_RANGE: an offset beyond the partition's watermarks."""


class NoOffsetError(KofkaError):
    """KOFKA_ERR_NO_OFFSET: no committed offset and auto.offset.reset=none."""


class TimedOutError(RetriableError, TimeoutError):
    """KOFKA_ERR_TIMED_OUT: timed out; for a send, the outcome is unknown."""


class StorageError(KofkaError):
    """KOFKA_ERR_STORAGE: the storage backend failed (I/O, corruption, disk full, locked)."""


class OutOfOrderSequenceError(KofkaError):
    """KOFKA_ERR_OUT_OF_ORDER_SEQUENCE: an idempotent batch's sequence number leaves a gap."""


class ProducerFencedError(KofkaError):
    """KOFKA_ERR_PRODUCER_FENCED: a newer producer with the same transactional.id exists."""


class TxnTimedOutError(KofkaError):
    """KOFKA_ERR_TXN_TIMED_OUT: the open transaction was aborted after transaction.timeout.ms."""


class RebalancedError(KofkaError):
    """KOFKA_ERR_REBALANCED: the consumer no longer owns the partition in the current generation."""


class ClosedError(KofkaError):
    """KOFKA_ERR_CLOSED: the object, or the broker it belongs to, was closed."""


class UnsupportedError(KofkaError):
    """KOFKA_ERR_UNSUPPORTED: not available in this build of the library or on this backend."""


class QueueFullError(RetriableError, BufferError):
    """KOFKA_ERR_QUEUE_FULL: produce() queue is full; call poll() and retry (a BufferError, as in confluent-kafka)."""


class BusyError(RetriableError):
    """KOFKA_ERR_BUSY: the storage stayed locked by another writer past sqlite.busy.timeout.ms;
    nothing was written: repeat the call."""


class PurgedError(KofkaError):
    """KOFKA_ERR_PURGED (delivery reports only): the record was never written because its
    transaction was aborted; produce it again in a new transaction if it is still wanted."""


_ERRORS: Dict[int, Type[KofkaError]] = {
    _ffi.KOFKA_ERR_INVALID_ARG: InvalidArgError,
    _ffi.KOFKA_ERR_INVALID_CONFIG: InvalidConfigError,
    _ffi.KOFKA_ERR_INVALID_STATE: InvalidStateError,
    _ffi.KOFKA_ERR_UNKNOWN_TOPIC: UnknownTopicError,
    _ffi.KOFKA_ERR_UNKNOWN_PARTITION: UnknownPartitionError,
    _ffi.KOFKA_ERR_TOPIC_EXISTS: TopicExistsError,
    _ffi.KOFKA_ERR_MSG_TOO_LARGE: MsgTooLargeError,
    _ffi.KOFKA_ERR_OFFSET_OUT_OF_RANGE: OffsetOutOfRangeError,
    _ffi.KOFKA_ERR_NO_OFFSET: NoOffsetError,
    _ffi.KOFKA_ERR_TIMED_OUT: TimedOutError,
    _ffi.KOFKA_ERR_STORAGE: StorageError,
    _ffi.KOFKA_ERR_OUT_OF_ORDER_SEQUENCE: OutOfOrderSequenceError,
    _ffi.KOFKA_ERR_PRODUCER_FENCED: ProducerFencedError,
    _ffi.KOFKA_ERR_TXN_TIMED_OUT: TxnTimedOutError,
    _ffi.KOFKA_ERR_REBALANCED: RebalancedError,
    _ffi.KOFKA_ERR_CLOSED: ClosedError,
    _ffi.KOFKA_ERR_UNSUPPORTED: UnsupportedError,
    _ffi.KOFKA_ERR_QUEUE_FULL: QueueFullError,
    _ffi.KOFKA_ERR_BUSY: BusyError,
    _ffi.KOFKA_ERR_PURGED: PurgedError,
}


_CODES: Dict[Type[KofkaError], int] = {cls: code for code, cls in _ERRORS.items()}


def _error_for(code: int, message: Optional[str] = None) -> KofkaError:
    """The exception instance for a code (the subclass when the code is known)."""
    return _ERRORS.get(int(code), KofkaError)(code, message)


def _last_error() -> str:
    return _lib.kofka_last_error().decode("utf-8", "replace")


def _check(rc: int) -> None:
    """Raise the exception for a non-zero kofka_err, with kofka_last_error() as message."""
    if rc != _ffi.KOFKA_OK:
        raise _error_for(rc, _last_error())


def _call(fn: Callable[..., int], *args: Any) -> None:
    """Call a kofka_err-returning function and raise on failure."""
    try:
        rc = fn(*args)
    except _ffi.MissingSymbol as e:
        raise UnsupportedError(_ffi.KOFKA_ERR_UNSUPPORTED, str(e)) from None
    _check(rc)


def _raw(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a library function, mapping a missing symbol to UnsupportedError."""
    try:
        return fn(*args)
    except _ffi.MissingSymbol as e:
        raise UnsupportedError(_ffi.KOFKA_ERR_UNSUPPORTED, str(e)) from None


# ---------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------


def _ms(timeout: Optional[float]) -> int:
    """Seconds (float) -> milliseconds for the C ABI; None or negative -> -1 (forever)."""
    if timeout is None or timeout < 0:
        return -1
    return min(int(math.ceil(timeout * 1000.0)), _INT_MAX)


def _wait_sliced(timeout: Optional[float], attempt: Callable[[int], Tuple[bool, Any]]) -> Any:
    """Run ``attempt(ms)`` in slices until it reports done or the timeout passes.

    ``attempt`` returns (done, result). Always calls at least once. Slicing
    keeps long waits interruptible by Ctrl-C.
    """
    if timeout is None or timeout < 0:
        while True:
            done, result = attempt(_SLICE_MS)
            if done:
                return result
    deadline = time.monotonic() + timeout
    while True:
        remaining = _ms(max(0.0, deadline - time.monotonic()))
        done, result = attempt(min(remaining, _SLICE_MS))
        if done or remaining <= _SLICE_MS:
            return result


def _enc(s: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"expected str, got {type(s).__name__}")
    return s.encode("utf-8")


def _data(v: Optional[Bytesish], what: str) -> Optional[bytes]:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    raise TypeError(f"{what} must be bytes, str or None, not {type(v).__name__}")


def _ptr(b: Optional[bytes]) -> Optional[int]:
    """Address of a bytes object's buffer (the caller keeps the object alive)."""
    if b is None:
        return None
    return ctypes.cast(ctypes.c_char_p(b), ctypes.c_void_p).value


def _config_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _merge_config(config: Optional[Mapping[str, Any]], kw: Mapping[str, Any]) -> Dict[str, str]:
    """config (verbatim keys) then keyword arguments (``_`` -> ``.``; ``delivery`` -> ``delivery.mode``)."""
    out: Dict[str, str] = {}
    for k, v in (config or {}).items():
        if v is not None:
            out[str(k)] = _config_value(v)
    for k, v in kw.items():
        key = "delivery.mode" if k == "delivery" else k.replace("_", ".")
        if v is not None:
            out[key] = _config_value(v)
    return out


class _CStrings:
    """A NULL-terminated ``const char *const *`` array, kept alive with its strings."""

    def __init__(self, items: Iterable[str]) -> None:
        self._bytes = [_enc(s) for s in items]
        self.count = len(self._bytes)
        self.array = (ctypes.c_char_p * (self.count + 1))(*self._bytes, None)

    def pointer(self) -> Any:
        return ctypes.cast(self.array, _ffi.ConfigP)


def _config_array(cfg: Dict[str, str]) -> _CStrings:
    flat: List[str] = []
    for k, v in cfg.items():
        flat.append(k)
        flat.append(v)
    return _CStrings(flat)


class _RecordBuilder:
    """Fills kofka_record structs and keeps every buffer they point at alive."""

    def __init__(self) -> None:
        self.keep: List[Any] = []

    def fill(
        self,
        rec: _ffi.kofka_record,
        value: Optional[Bytesish],
        key: Optional[Bytesish] = None,
        partition: Optional[int] = None,
        timestamp_ms: Optional[int] = None,
        headers: Optional[Headers] = None,
    ) -> None:
        k = _data(key, "key")
        v = _data(value, "value")
        self.keep.append(k)
        self.keep.append(v)
        rec.partition = _ffi.KOFKA_PARTITION_ANY if partition is None else int(partition)
        rec.key = _ptr(k)
        rec.key_len = 0 if k is None else len(k)
        rec.value = _ptr(v)
        rec.value_len = 0 if v is None else len(v)
        rec.timestamp_ms = 0 if timestamp_ms is None else int(timestamp_ms)
        rec.offset = -1
        rec.err = 0
        if headers:
            rec.headers, rec.header_count = self.header_array(headers)
        else:
            rec.headers = None
            rec.header_count = 0

    def header_array(self, headers: Headers) -> Tuple[Any, int]:
        """A ``kofka_header`` array of ``headers`` (kept alive here) and its length."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        arr = (_ffi.kofka_header * len(pairs))()
        for i, pair in enumerate(pairs):
            name, hv = pair
            hb = _data(hv, "header value")
            nb = _enc(name)
            self.keep.append(nb)
            self.keep.append(hb)
            arr[i].name = nb
            arr[i].value = _ptr(hb)
            arr[i].value_len = 0 if hb is None else len(hb)
        self.keep.append(arr)
        return ctypes.cast(arr, ctypes.POINTER(_ffi.kofka_header)), len(pairs)


# ---------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------


class RecordMetadata(NamedTuple):
    """Where a produced record went: its topic, partition and offset.

    ``offset`` is -1 when it is not known (``acks=0``, at-most-once).
    """

    topic: str
    partition: int
    offset: int


class Message(NamedTuple):
    """A consumed record.

    ``key``/``value`` are ``bytes`` or ``None`` when absent; ``headers`` is a
    list of ``(name, value)`` pairs (value ``bytes`` or ``None``), in order.
    """

    topic: str
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    timestamp_ms: int
    headers: Sequence[Tuple[str, Optional[bytes]]] = ()


def _bytes_at(ptr: Optional[int], n: int) -> Optional[bytes]:
    if not ptr:
        return None
    return ctypes.string_at(ptr, n) if n else b""


_TOPIC_NAMES: Dict[bytes, str] = {}
"""Topic names as read from messages, decoded once (a consumer sees few)."""


def _message_from(m: _ffi.kofka_message) -> Message:
    n = m.header_count
    headers: List[Tuple[str, Optional[bytes]]] = []
    for i in range(n):
        h = m.headers[i]
        headers.append(((h.name or b"").decode("utf-8", "replace"), _bytes_at(h.value, h.value_len)))
    raw = m.topic or b""
    topic = _TOPIC_NAMES.get(raw)
    if topic is None:
        topic = raw.decode("utf-8", "replace")
        if len(_TOPIC_NAMES) < 4096:
            _TOPIC_NAMES[raw] = topic
    key, value = m.key, m.value
    string_at = ctypes.string_at
    return tuple.__new__(Message, (topic, m.partition, m.offset,
                                   string_at(key, m.key_len) if key else None,
                                   string_at(value, m.value_len) if value else None,
                                   m.timestamp_ms, headers))


# ---------------------------------------------------------------------------
# Broker
# ---------------------------------------------------------------------------


class _Closing:
    """Behaviour shared by the handle classes: the library handle (``_h`` raises ClosedError
    once closed), ``closed``, and closing on leaving a ``with`` block or on collection (errors
    at collection are ignored)."""

    _handle: Any = None

    def _closed_message(self) -> str:
        return f"{type(self).__name__.lower()} is closed"

    def _h(self) -> Any:
        if not self._handle:
            raise ClosedError(_ffi.KOFKA_ERR_CLOSED, self._closed_message())
        return self._handle

    @property
    def closed(self) -> bool:
        """True once the handle was closed (or, for a consumer, destroyed)."""
        return not self._handle

    def close(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class Broker(_Closing):
    """A storage backend opened as a broker.

    Args:
        storage: ``"memory:"`` (volatile, this object only) or
            ``"sqlite:PATH"`` (a file shared by threads and processes).
        config: broker config keys passed verbatim, e.g.
            ``{"num.partitions": 3}``.
        **kw: config keys with ``_`` for ``.``, e.g.
            ``auto_create_topics_enable=False``.

    Use as a context manager, or call :meth:`close`. Producers and consumers
    opened from a broker keep it referenced; after :meth:`close` their calls
    raise :class:`ClosedError`.
    """

    def __init__(self, storage: str = "memory:", config: Optional[Mapping[str, Any]] = None, **kw: Any) -> None:
        self._handle: Any = None
        self.storage = storage
        # (name, object, struct, callbacks) of every interceptor added: the library calls the
        # callbacks as long as the broker or anything opened on it lives.
        self._interceptors: List[Tuple[str, Any, Any, List[Any]]] = []
        cfg = _config_array(_merge_config(config, kw))
        out = _ffi.BrokerP()
        _call(_lib.kofka_broker_open, _enc(storage), cfg.pointer(), ctypes.byref(out))
        self._handle = out
        if storage_module._python_scheme(storage):
            storage_module._track(self)

    def _closed_message(self) -> str:
        return f"broker {self.storage!r} is closed"

    def create_topic(self, name: str, partitions: int = 1, config: Optional[Mapping[str, Any]] = None) -> None:
        """Create a topic with ``partitions`` partitions and its own ``config``
        (Kafka's topic keys: ``retention.ms``, ``retention.bytes``,
        ``cleanup.policy``, ``delete.retention.ms``, ``min.compaction.lag.ms``,
        ``max.message.bytes``; keys not given take the broker defaults, and
        retention is unlimited unless set).

        Raises TopicExistsError if it exists, InvalidArgError for a bad name
        (Kafka's rule: ``[A-Za-z0-9._-]{1,249}``) or partition count,
        InvalidConfigError for an unknown key or invalid value.
        """
        if config:
            cfg = _config_array(_merge_config(config, {}))
            _call(_lib.kofka_topic_create_with_config, self._h(), _enc(name), int(partitions), cfg.pointer())
        else:
            _call(_lib.kofka_topic_create, self._h(), _enc(name), int(partitions))

    def set_topic_config(self, name: str, config: Mapping[str, Any]) -> None:
        """Set keys of the topic's own configuration; a value of ``""`` returns
        a key to the broker default (InvalidConfigError for an unknown key or
        invalid value; nothing is changed then)."""
        cfg = _config_array({str(k): ("" if v is None else _config_value(v)) for k, v in config.items()})
        _call(_lib.kofka_topic_config_set, self._h(), _enc(name), cfg.pointer())

    def topic_config(self, name: str, key: str) -> str:
        """The value in effect for topic config ``key``: the topic's own, else
        the broker default (a string, as Kafka reports configs)."""
        size = ctypes.c_size_t(64)
        while True:
            buf = ctypes.create_string_buffer(size.value)
            rc = _raw(_lib.kofka_topic_config_get, self._h(), _enc(name), _enc(key), buf, ctypes.byref(size))
            if rc == _ffi.KOFKA_ERR_INVALID_ARG and size.value > len(buf):
                continue   # the buffer was too small: size says how much is needed
            _check(rc)
            return buf.value.decode()

    def delete_records(self, topic: str, partition: int, before_offset: int = -1) -> int:
        """Kafka's DeleteRecords: delete every record below ``before_offset``
        (``-1``: the high watermark, i.e. everything); returns the partition's
        new low watermark (log start offset). OffsetOutOfRangeError above the
        high watermark."""
        low = ctypes.c_int64()
        _call(_lib.kofka_delete_records, self._h(), _enc(topic), int(partition), int(before_offset), ctypes.byref(low))
        return low.value

    def maintain(self) -> None:
        """Run retention, compaction and state expiry now, for every topic (the
        same work the background cleaner does every
        ``log.retention.check.interval.ms``)."""
        _call(_lib.kofka_broker_maintain, self._h())

    def topic_partitions(self, name: str) -> int:
        """The topic's partition count (UnknownTopicError if it does not exist)."""
        n = ctypes.c_int32()
        _call(_lib.kofka_topic_partitions, self._h(), _enc(name), ctypes.byref(n))
        return n.value

    def watermarks(self, topic: str, partition: int) -> Tuple[int, int]:
        """``(low, high)``: the log start offset (the first offset that may
        still be held; retention and :meth:`delete_records` move it up) and the
        next offset to be written."""
        low, high = ctypes.c_int64(), ctypes.c_int64()
        _call(_lib.kofka_watermarks, self._h(), _enc(topic), int(partition), ctypes.byref(low), ctypes.byref(high))
        return low.value, high.value

    def add_interceptor(self, interceptor: Any, name: Optional[str] = None) -> str:
        """Add a Python interceptor: every producer and consumer opened on this broker from now
        on calls its hooks (in the order interceptors were added). Returns its name.

        ``interceptor`` is any object with some of ``on_send(topic, record)``,
        ``on_acknowledgement(topic, result)``, ``on_consume(message)``,
        ``on_commit(group, topic, partition, offset, error)`` and ``on_close()``; see
        :mod:`kofka.interceptors`. ``on_send`` may return a :class:`ProducerRecord` to send
        instead, or a list (or dict) of headers to replace the record's headers. An exception
        in a hook is reported on stderr once per hook, counted by
        :func:`interceptor_errors`, and otherwise ignored. The broker keeps the object alive.

        Raises InvalidArgError when ``name`` (default: the class name and the object's id) was
        already added, ClosedError after close, TypeError for an object with no hook.
        """
        return interceptors_module._add(self, interceptor, name)

    def producer(self, config: Optional[Mapping[str, Any]] = None, **kw: Any) -> "Producer":
        """Open a :class:`Producer` on this broker (same arguments as ``Producer``)."""
        return Producer(self, config, **kw)

    def consumer(self, config: Optional[Mapping[str, Any]] = None, **kw: Any) -> "Consumer":
        """Open a :class:`Consumer` on this broker (same arguments as ``Consumer``)."""
        return Consumer(self, config, **kw)

    def serve(self, listen: str = "127.0.0.1:9092", config: Optional[Mapping[str, Any]] = None, **kw: Any) -> "Server":
        """Serve this broker over the Kafka wire protocol, so that Kafka clients
        (confluent-kafka, kafka-python, kcat) can use its storage while this
        process keeps using it through the library.

        Args:
            listen: ``"HOST:PORT"``; port 0 picks a free port (see ``Server.port``).
            config: ``advertised.host`` (the host clients are told to connect to),
                ``server.worker.threads`` (8).

        Returns a :class:`Server`; stop it with ``stop()`` or a ``with`` block::

            with broker.serve("127.0.0.1:0") as server:
                bootstrap = f"127.0.0.1:{server.port}"

        Raises InvalidArgError for a malformed or unusable address,
        InvalidConfigError for an unknown key, ClosedError after close.
        """
        return Server(self, listen, config, **kw)

    def close(self) -> None:
        """Close the broker. Closing twice is harmless."""
        h, self._handle = self._handle, None
        if h:
            _call(_lib.kofka_broker_close, h)

    def __repr__(self) -> str:
        return f"<kofka.Broker {self.storage!r}{' closed' if self.closed else ''}>"


class Server(_Closing):
    """A Kafka wire-protocol server on a :class:`Broker` (see :meth:`Broker.serve`).

    ``port`` is the port it listens on; ``stop()`` (or leaving a ``with``
    block) stops it gracefully: requests being handled finish, connections
    close. The broker stays open.
    """

    def __init__(self, broker: "Broker", listen: str = "127.0.0.1:9092",
                 config: Optional[Mapping[str, Any]] = None, **kw: Any) -> None:
        self._handle = None
        self.broker = broker   # keeps the broker alive while serving
        cfg = _config_array(_merge_config(config, kw))
        out = _ffi.ServerP()
        _call(_lib.kofka_server_start, broker._h(), _enc(listen), cfg.pointer(), ctypes.byref(out))
        self._handle = out
        port = ctypes.c_int()
        _call(_lib.kofka_server_port, out, ctypes.byref(port))
        self.port: int = port.value
        self.listen = listen

    def _closed_message(self) -> str:
        return f"server on {self.listen!r} is stopped"

    @property
    def bootstrap_servers(self) -> str:
        """``"HOST:PORT"`` for a Kafka client's ``bootstrap.servers``."""
        host = self.listen.rsplit(":", 1)[0] if ":" in self.listen else self.listen
        if host in ("0.0.0.0", "", "[::]"):
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    def stop(self) -> None:
        """Stop serving. Stopping twice is harmless."""
        h, self._handle = self._handle, None
        if h:
            _call(_lib.kofka_server_stop, h)

    close = stop

    def __repr__(self) -> str:
        return f"<kofka.Server {self.listen!r} port {self.port}{' stopped' if self.closed else ''}>"


# ---------------------------------------------------------------------------
# Producer
# ---------------------------------------------------------------------------

DeliveryCallback = Callable[[Optional[KofkaError], RecordMetadata], Any]


class _HoldTimer:
    """One daemon thread for every producer: hands over records a producer has held for its
    lease's ``hold_ms`` (the producer's ``linger.ms``) when no call of that producer did it
    first, so a record produced and never followed by another call is still written, as the
    library's writer would have written it."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Fresh state (also in a forked child, where the thread does not exist)."""
        self._cv = threading.Condition()
        self._due: Dict[int, Tuple[Any, float]] = {}   # id(producer) -> (weak ref, when)
        self._thread: Optional[threading.Thread] = None
        self._wakes = math.inf   # when the thread wakes next (inf: when notified)

    def watch(self, producer: "Producer", when: float) -> None:
        with self._cv:
            self._due[id(producer)] = (weakref.ref(producer), when)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kofka-hold-timer", daemon=True)
                self._thread.start()
            if when < self._wakes:   # else it wakes in time anyway: no wake-up per lease
                self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                now = time.monotonic()
                ready = [k for k, (_, when) in self._due.items() if when <= now]
                if not ready:
                    self._wakes = min((when for _, when in self._due.values()), default=math.inf)
                    self._cv.wait(None if self._wakes == math.inf else self._wakes - now)
                    self._wakes = -math.inf   # awake: it reads _due again before it sleeps
                    continue
                refs = [self._due.pop(k)[0] for k in ready]
            for ref in refs:
                p = ref()
                if p is not None:
                    p._hand_over_due()


_hold_timer = _HoldTimer()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_hold_timer._reset)


# array.array typecode of a C pointer (the opaques kofka_produce_packed reads).
_OPAQUE_TYPECODE = next(c for c in "LQ" if array.array(c).itemsize == ctypes.sizeof(ctypes.c_void_p))


def _make_delivery_trampoline(ref: "weakref.ReferenceType[Producer]") -> Any:
    def trampoline(_p: Any, topic: Optional[int], record: Optional[int], msg_opaque: Optional[int], _cb: Any) -> None:
        if not msg_opaque:
            return
        producer = ref()
        if producer is None:
            return
        callback = producer._pending.pop(msg_opaque, None)
        if callback is None:
            return
        try:
            rec = ctypes.cast(record, ctypes.POINTER(_ffi.kofka_record)).contents
            err = None if rec.err == _ffi.KOFKA_OK else _error_for(rec.err)
            name = ctypes.string_at(topic) if topic else b""
            md = RecordMetadata(name.decode("utf-8", "replace"), rec.partition, rec.offset)
            callback(err, md)
        except BaseException as e:  # re-raised from poll()/flush()/close()
            if producer._callback_error is None:
                producer._callback_error = e

    return _ffi.kofka_delivery_cb(trampoline)


class Producer(_Closing):
    """Produces records to a broker's topics.

    Args:
        broker: the :class:`Broker` (kept referenced by the producer).
        config: producer config keys passed verbatim.
        **kw: config keys with ``_`` for ``.``; ``delivery`` is
            ``delivery.mode`` (``"at-most-once"``, ``"at-least-once"``,
            ``"exactly-once"``), ``transactional_id`` is ``transactional.id``.

    Synchronous: :meth:`send`, :meth:`send_batch`. Asynchronous, as in
    confluent-kafka: :meth:`produce` + :meth:`poll` / :meth:`flush`; the
    ``on_delivery(err, metadata)`` callback runs on the thread calling
    ``poll``/``flush``/``close``. Transactions: :meth:`init_transactions`,
    then :meth:`transaction` (or begin/commit/abort).
    """

    def __init__(self, broker: Broker, config: Optional[Mapping[str, Any]] = None, **kw: Any) -> None:
        self._handle: Any = None
        self._broker = broker
        self._pending: Dict[int, DeliveryCallback] = {}
        self._ids = itertools.count(1)
        self._callback_error: Optional[BaseException] = None
        # Topic names produced to, encoded once (produce() is called per record).
        self._topic_bytes: Dict[str, bytes] = {}
        # Records produce() holds until they are handed to the library many at a time
        # (kofka_produce_packed), in the slots of a lease the library granted
        # (kofka_produce_lease): (key, value, partition, opaque) tuples, in produce() order.
        # All of it is guarded by _plock, which is never held across a call that waits.
        self._plock = threading.RLock()
        # A record with nothing but a value (bytes) is held as that value.
        self._held: List[Union[bytes, Tuple[Optional[bytes], Optional[bytes], Optional[int], Optional[int]]]] = []
        self._held_mixed = False                  # whether _held holds any tuple
        self._lease_topic: Optional[str] = None   # the leased topic (None: no lease)
        self._lease_tb = b""                      # ... encoded
        self._lease_credits = 0                   # slots granted; len(_held) of them are used
        self._room = 0                            # slots left once a record is held (the fast path's)
        self._lease_partitions = 0                # the topic's partition count
        self._lease_bound = 0                     # key + value bytes a record may have
        self._lease_hold = 0.0                    # seconds a record may be held (linger.ms)
        self._held_since = 0.0                    # time.monotonic() of the first held record
        self._leasing = True                      # False once the library refuses leases (interceptors)
        self._config = _merge_config(config, kw)
        cfg = _config_array(self._config)
        out = _ffi.ProducerP()
        _call(_lib.kofka_producer_new, broker._h(), cfg.pointer(), ctypes.byref(out))
        self._handle = out
        # Kept alive as long as the producer: the library calls it from poll/flush/close.
        self._trampoline = _make_delivery_trampoline(weakref.ref(self))
        # 1 while delivery reports wait to be served (kofka_producer_set_ready_flag): poll(0)
        # reads it instead of calling into the library for nothing. Kept as long as the
        # producer: the library writes it until kofka_producer_close returns.
        self._ready = ctypes.c_int32(0)
        try:
            _call(_lib.kofka_producer_set_delivery_cb, out, self._trampoline, None)
            _call(_lib.kofka_producer_set_ready_flag, out, ctypes.byref(self._ready))
        except BaseException:
            self._handle = None
            _raw(_lib.kofka_producer_close, out, 0)
            raise

    @property
    def broker(self) -> Broker:
        """The broker this producer writes to."""
        return self._broker


    def _raise_callback_error(self) -> None:
        e, self._callback_error = self._callback_error, None
        if e is not None:
            raise e

    def send(
        self,
        topic: str,
        value: Optional[Bytesish],
        key: Optional[Bytesish] = None,
        partition: Optional[int] = None,
        timestamp_ms: Optional[int] = None,
        headers: Optional[Headers] = None,
    ) -> RecordMetadata:
        """Send one record synchronously and return where it went.

        Returns when the delivery mode's guarantee for the record is settled.
        ``headers`` is a list of ``(name, bytes)`` pairs; ``timestamp_ms``
        None means now; ``partition`` None lets the partitioner choose
        (keyed records go to ``murmur2(key) % partitions``).
        """
        self._settle()
        rec = _ffi.kofka_record()
        b = _RecordBuilder()
        b.fill(rec, value, key, partition, timestamp_ms, headers)
        _call(_lib.kofka_send, self._h(), _enc(topic), ctypes.byref(rec))
        return RecordMetadata(topic, rec.partition, rec.offset)

    def send_batch(
        self,
        topic: str,
        records: Iterable[Union[Optional[Bytesish], Tuple[Optional[Bytesish], Optional[Bytesish]]]],
    ) -> List[RecordMetadata]:
        """Send many records synchronously in one library call.

        ``records`` holds values, or ``(key, value)`` pairs. Returns one
        :class:`RecordMetadata` per record, in order. If any record failed,
        raises the first record's error; its ``results`` attribute lists, per
        record, a RecordMetadata or the KofkaError for that record.
        """
        items = records if isinstance(records, list) else list(records)
        self._settle()
        fast = self._send_packed(topic, items)
        if fast is not None:
            return fast
        arr = (_ffi.kofka_record * max(len(items), 1))()
        b = _RecordBuilder()
        for i, item in enumerate(items):
            if isinstance(item, (tuple, list)):
                if len(item) != 2:
                    raise ValueError(f"send_batch: record {i} must be a value or a (key, value) pair")
                b.fill(arr[i], item[1], item[0])
            else:
                b.fill(arr[i], item)
        rc = _raw(_lib.kofka_send_batch, self._h(), _enc(topic), arr, len(items))
        message = _last_error() if rc != _ffi.KOFKA_OK else ""
        results: List[Any] = []
        for i in range(len(items)):
            r = arr[i]
            if r.err != _ffi.KOFKA_OK:
                results.append(_error_for(r.err))
            else:
                results.append(RecordMetadata(topic, r.partition, r.offset))
        if rc != _ffi.KOFKA_OK:
            err = _error_for(rc, message)
            err.results = results  # type: ignore[attr-defined]
            raise err
        return results

    def _send_packed(self, topic: str, items: List[Any]) -> Optional[List[RecordMetadata]]:
        """The fast path of send_batch: values (or (key, value) pairs) that are all bytes or
        None cross the boundary in one call as packed buffers (kofka_send_packed), with no
        per-record ctypes structs. Returns None when the items need the general path."""
        n = len(items)
        if n == 0:
            return []
        kinds = set(map(type, items))
        if kinds == {bytes}:
            values, keys = items, None
        elif kinds == {tuple} and all(len(i) == 2 and (i[0] is None or type(i[0]) is bytes)
                                      and (i[1] is None or type(i[1]) is bytes) for i in items):
            keys = [i[0] for i in items]
            values = [i[1] for i in items]
        else:
            return None
        if keys is None:
            vlens = array.array("q", map(len, values))   # all bytes: C-speed
            vdata = b"".join(values)
        else:
            vlens = array.array("q", [-1 if v is None else len(v) for v in values])
            vdata = b"".join(v for v in values if v is not None)
        if keys is not None:
            klens = array.array("q", [-1 if k is None else len(k) for k in keys])
            kdata = b"".join(k for k in keys if k is not None)
            kptr, klptr = ctypes.c_char_p(kdata), klens.buffer_info()[0]
        else:
            kptr, klptr = None, None
        parts = array.array("i", bytes(4 * n))
        offs = array.array("q", bytes(8 * n))
        errs = array.array("i", bytes(4 * n))
        rc = _raw(_lib.kofka_send_packed, self._h(), _enc(topic), _ffi.KOFKA_PARTITION_ANY, kptr, klptr,
                  vdata, vlens.buffer_info()[0], n, parts.buffer_info()[0], offs.buffer_info()[0], errs.buffer_info()[0])
        if rc == _ffi.KOFKA_OK:
            # tuple.__new__ builds each RecordMetadata without running Python code per record
            return list(map(tuple.__new__, itertools.repeat(RecordMetadata, n), zip(itertools.repeat(topic, n), parts, offs)))
        message = _last_error()
        results: List[Any] = [RecordMetadata(topic, parts[i], offs[i]) if errs[i] == _ffi.KOFKA_OK else _error_for(errs[i])
                              for i in range(n)]
        err = _error_for(rc, message)
        err.results = results  # type: ignore[attr-defined]
        raise err

    def produce(
        self,
        topic: str,
        value: Optional[Bytesish] = None,
        key: Optional[Bytesish] = None,
        partition: Optional[int] = None,
        timestamp_ms: Optional[int] = None,
        headers: Optional[Headers] = None,
        on_delivery: Optional[DeliveryCallback] = None,
    ) -> None:
        """Queue a record for asynchronous delivery (confluent-kafka style).

        ``on_delivery(err, metadata)`` is called later, on the thread that
        calls :meth:`poll`, :meth:`flush` or :meth:`close`: ``err`` is None
        or a :class:`KofkaError`; ``metadata`` is a :class:`RecordMetadata`.
        An exception raised by the callback is re-raised from that call.
        Raises QueueFullError (also a BufferError) when the queue is full:
        call :meth:`poll` and retry.

        Records without headers or a timestamp are held by the producer and
        handed to the library many at a time (in slots it reserved for them,
        which count against ``queue.buffering.max.messages`` as queued records
        do); every other call of the producer (:meth:`poll`, :meth:`flush`,
        :meth:`close`, the transaction calls, ``len()``...) hands them over
        first, so it sees them queued. Errors that do not depend on the record
        (queue full, no open transaction, unknown topic, closed) and errors of
        the record itself (too large, partition out of range) are raised here,
        as before. What changes after a record was accepted but before it was
        handed over (the transaction became abort-only, the topic's
        ``max.message.bytes`` was lowered) fails the record in its delivery
        report with the error ``produce`` would then have raised.
        """
        # The common call (bytes, no partition, timestamp, headers or callback) joins the
        # records held under the lease in one step, when it fits what the lease stands for.
        # A record without a key is held as its value alone (no tuple per record), and the
        # lock is taken with explicit calls (a `with` block costs twice as much per record).
        if type(value) is bytes and partition is None and timestamp_ms is None and headers is None and on_delivery is None:
            if key is None:
                rec, size = value, len(value)
            elif type(key) is bytes:
                rec, size = (key, value, None, None), len(key) + len(value)
            else:
                rec = None
            if rec is not None:
                lock = self._plock
                lock.acquire()
                try:
                    if self._room and topic == self._lease_topic and size <= self._lease_bound:
                        self._room -= 1
                        self._held.append(rec)
                        if rec is not value:
                            self._held_mixed = True
                        return
                finally:
                    lock.release()
        # key and value go as they are when bytes (the struct points straight at them).
        k = key if key is None or type(key) is bytes else _data(key, "key")
        v = value if value is None or type(value) is bytes else _data(value, "value")
        plain = timestamp_ms is None and not headers and (partition is None or type(partition) is int)
        with self._plock:
            fresh = False   # True once a lease was taken for this record
            # Held when a lease has a slot and the record passes the checks the lease stands for.
            while not (plain and topic == self._lease_topic and len(self._held) < self._lease_credits
                       and (partition is None or 0 <= partition < self._lease_partitions)
                       and (0 if k is None else len(k)) + (0 if v is None else len(v)) <= self._lease_bound):
                # Order: what is held goes first (this also ends a fresh lease the record does
                # not fit, so that kofka_produce sees every slot free); then the record is held
                # under a new lease, or goes alone through kofka_produce, which raises what it
                # raises today.
                self._handover()
                h = self._h()
                tb = self._topic_bytes.get(topic) if type(topic) is str else None
                if tb is None:
                    tb = _enc(topic)
                    if len(self._topic_bytes) < 1024:
                        self._topic_bytes[topic] = tb
                if fresh or not (plain and self._leasing and self._lease(h, topic, tb)):
                    self._produce_one(h, tb, k, v, partition, timestamp_ms, headers, on_delivery)
                    return
                fresh = True
            opaque = None
            if on_delivery is not None:
                opaque = next(self._ids)
                self._pending[opaque] = on_delivery
            if not self._held:
                self._start_holding()
            if type(v) is bytes and k is None and partition is None and opaque is None:
                self._held.append(v)
            else:
                self._held.append((k, v, partition, opaque))
                self._held_mixed = True
            self._room = self._lease_credits - len(self._held)

    # Records per lease: enough that a crossing costs little per record, few enough that a
    # lease does not hold a large share of queue.buffering.max.messages.
    _LEASE_RECORDS = 512

    def _lease(self, h: Any, topic: str, tb: bytes) -> bool:
        """Takes a lease for ``topic`` (lock held, nothing held). False when the library grants
        none: the record then goes through kofka_produce, which raises the same error."""
        lease = _ffi.kofka_lease()
        rc = _lib.kofka_produce_lease(h, tb, self._LEASE_RECORDS, ctypes.byref(lease))
        if rc != _ffi.KOFKA_OK:
            if rc == _ffi.KOFKA_ERR_UNSUPPORTED:
                self._leasing = False   # interceptors: every record goes alone, for good
            return False
        self._lease_topic, self._lease_tb = topic, tb
        self._granted = lease                       # passed back with the records it covers
        self._lease_credits = lease.credits
        self._lease_partitions = lease.partitions
        self._lease_bound = lease.max_kv_bytes
        self._lease_hold = max(0, lease.hold_ms) / 1000.0
        return True

    def _start_holding(self) -> None:
        """The first record is held (lock held): it must be handed over within the hold time."""
        self._held_since = time.monotonic()
        _hold_timer.watch(self, self._held_since + self._lease_hold)

    def _hand_over_due(self) -> None:
        """Called by the hold timer: hands over records held for the hold time (or asks to be
        called again when the first of them will be). An error is raised from the next poll,
        flush or close, as a callback's is."""
        with self._plock:
            if not self._held:
                return
            due = self._held_since + self._lease_hold
            if time.monotonic() < due:
                _hold_timer.watch(self, due)
                return
            try:
                self._handover()
            except BaseException as e:
                if self._callback_error is None:
                    self._callback_error = e

    def _handover(self) -> None:
        """Hands the held records to the library in one call and ends the lease, releasing
        its unused slots (lock held). Raises the library's error if it refused the call."""
        credits = self._lease_credits
        if not credits:
            return
        held, self._held = self._held, []
        mixed, self._held_mixed = self._held_mixed, False
        self._lease_topic, self._lease_credits, self._room = None, 0, 0
        n = len(held)
        kptr = klens = vlens = parts = ops = None
        vdata = b""
        if n:
            if mixed:
                ks, vs, ps, os_ = zip(*[(None, r, None, None) if type(r) is bytes else r for r in held])
            else:   # values alone (bytes): no key, null, partition or callback
                vs = held
            if mixed and None in vs:
                vl = array.array("q", [-1 if v is None else len(v) for v in vs])
                vdata = b"".join([v for v in vs if v is not None])
            else:
                vl = array.array("q", map(len, vs))
                vdata = b"".join(vs)
            vlens = vl.buffer_info()[0]
        if n and mixed:
            if ks.count(None) != n:
                kl = array.array("q", [-1 if k is None else len(k) for k in ks])
                kptr = b"".join([k for k in ks if k is not None])
                klens = kl.buffer_info()[0]
            if ps.count(None) != n:
                pa = array.array("i", [-1 if p is None else p for p in ps])
                parts = pa.buffer_info()[0]
            if os_.count(None) != n:
                oa = array.array(_OPAQUE_TYPECODE, [0 if o is None else o for o in os_])
                ops = oa.buffer_info()[0]
        rc = _lib.kofka_produce_packed(self._handle, self._lease_tb, ctypes.byref(self._granted), kptr, klens, vdata, vlens, parts, ops, n)
        if rc != _ffi.KOFKA_OK:
            err = _error_for(rc, _last_error())
            for r in held:   # not queued: no report will come for them
                if type(r) is tuple and r[3] is not None:
                    self._pending.pop(r[3], None)
            raise err

    def _settle(self) -> None:
        """Hands the held records over before any other call, so that it sees them queued."""
        if self._lease_credits:
            with self._plock:
                self._handover()

    def _produce_one(self, h: Any, tb: bytes, k: Optional[bytes], v: Optional[bytes], partition: Optional[int],
                     timestamp_ms: Optional[int], headers: Optional[Headers],
                     on_delivery: Optional[DeliveryCallback]) -> None:
        """One record through kofka_produce (lock held, no lease)."""
        rec = _ffi.kofka_record_in(_ffi.KOFKA_PARTITION_ANY if partition is None else int(partition),
                                   k, 0 if k is None else len(k), v, 0 if v is None else len(v))
        if timestamp_ms is not None:
            rec.timestamp_ms = int(timestamp_ms)
        if headers:
            keep = _RecordBuilder()   # holds the header buffers until the call returns
            rec.headers, rec.header_count = keep.header_array(headers)
        opaque = None
        if on_delivery is not None:
            opaque = next(self._ids)
            self._pending[opaque] = on_delivery
        try:
            rc = _lib.kofka_produce(h, tb, ctypes.byref(rec), opaque)
            if rc != _ffi.KOFKA_OK:
                raise _error_for(rc, _last_error())
        except BaseException:
            if opaque is not None:
                self._pending.pop(opaque, None)
            raise

    def poll(self, timeout: Optional[float] = 0) -> int:
        """Serve delivery reports on this thread; return how many were served.

        Waits up to ``timeout`` seconds for the first report (0: do not wait;
        None: until one arrives). A poll that may wait hands the records
        produce() holds over first; ``poll(0)`` does not (no report of a held
        record can be ready, and ``produce(); poll(0)`` per record — the
        confluent-kafka idiom — would otherwise end every lease after one
        record): they go over when the lease is full, at the next other call,
        or ``linger.ms`` after the first was held. ``poll(0)`` with no report
        ready returns 0 without calling into the library (it reads a flag the
        library keeps), as cheaply as confluent-kafka's.
        """
        if timeout == 0 and not self._ready.value and self._callback_error is None and self._handle is not None:
            return 0
        if timeout is None or timeout > 0:
            self._settle()
        h = self._h()

        def attempt(ms: int) -> Tuple[bool, int]:
            n = _raw(_lib.kofka_producer_poll, h, ms)
            if n < 0:  # the handle was closed (by another thread) or is not a producer
                raise _error_for(_ffi.KOFKA_ERR_CLOSED if self.closed else _ffi.KOFKA_ERR_INVALID_ARG, _last_error())
            return n > 0, n

        try:
            if timeout is not None and timeout <= 0:
                return attempt(0)[1]
            return _wait_sliced(timeout, attempt)
        finally:
            self._raise_callback_error()

    def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until every queued record is delivered or failed, serving reports.

        Raises TimedOutError if records are still queued after ``timeout``
        seconds (None: wait forever).
        """
        self._settle()
        h = self._h()

        def attempt(ms: int) -> Tuple[bool, int]:
            rc = _raw(_lib.kofka_flush, h, ms)
            if rc == _ffi.KOFKA_ERR_TIMED_OUT:
                return False, rc
            return True, rc

        try:
            rc = _wait_sliced(timeout, attempt)
            _check(rc)
        finally:
            self._raise_callback_error()

    def __len__(self) -> int:
        """How many produce() calls with a callback still await their report."""
        self._settle()
        return len(self._pending)

    def init_transactions(self, timeout: Optional[float] = None) -> None:
        """Register ``transactional.id``: fences older producers with the same id."""
        self._settle()
        _call(_lib.kofka_init_transactions, self._h(), _ms(timeout))

    def begin_transaction(self) -> None:
        """Open a transaction."""
        self._settle()
        _call(_lib.kofka_begin_transaction, self._h())

    def send_offsets_to_transaction(self, consumer: "Consumer", timeout: Optional[float] = None) -> None:
        """Add the consumer's current positions to the open transaction.

        They become the consumer group's committed offsets if and only if the
        transaction commits.
        """
        self._settle()
        consumer._settled(lambda: _call(_lib.kofka_send_offsets_to_transaction, self._h(), consumer._h(), _ms(timeout)))

    def commit_transaction(self, timeout: Optional[float] = None) -> None:
        """Commit the open transaction: its records and offsets become visible atomically."""
        self._settle()
        _call(_lib.kofka_commit_transaction, self._h(), _ms(timeout))

    def abort_transaction(self, timeout: Optional[float] = None) -> None:
        """Abort the open transaction: read_committed consumers never see its records."""
        self._settle()
        _call(_lib.kofka_abort_transaction, self._h(), _ms(timeout))

    def txn_requires_abort(self) -> bool:
        """True when the open transaction can only be aborted (librdkafka's
        ``txn_requires_abort``): call :meth:`abort_transaction`, then start over."""
        self._settle()
        h = self._h()
        r = bool(_raw(_lib.kofka_txn_requires_abort, h))
        if not r and _last_error():
            raise _error_for(_ffi.KOFKA_ERR_CLOSED, _last_error())
        return r

    @contextmanager
    def transaction(self, timeout: Optional[float] = None) -> Iterator["Producer"]:
        """``with p.transaction():`` begins a transaction, commits it at the end,
        or aborts it and re-raises when the block raises."""
        self.begin_transaction()
        try:
            yield self
        except BaseException:
            try:
                self.abort_transaction(timeout)
            except KofkaError:
                pass  # the block's exception is the one that matters
            raise
        self.commit_transaction(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush queued records (up to ``timeout`` seconds; None: forever), then free.

        Delivery callbacks may run during close. An open transaction is
        aborted. Closing twice is harmless. Raises TimedOutError when records
        were still queued (their reports carry TimedOutError).
        """
        refused: Optional[BaseException] = None
        with self._plock:
            # What is held is handed over first; no produce() can hold more after this.
            try:
                self._handover()
            except BaseException as e:   # the producer is closed all the same, then this raised
                refused = e
            h, self._handle = self._handle, None
        if h:
            try:
                _call(_lib.kofka_producer_close, h, _ms(timeout))
            finally:
                self._pending.clear()
                self._raise_callback_error()
        if refused is not None:
            raise refused

    def __del__(self) -> None:
        h = getattr(self, "_handle", None)
        if h:
            try:
                self._handover()   # held records are queued, then closed like any queued record
            except Exception:
                pass
            self._handle = None
            try:
                _raw(_lib.kofka_producer_set_delivery_cb, h, _ffi.kofka_delivery_cb(), None)
                _raw(_lib.kofka_producer_close, h, 0)
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"<kofka.Producer{' closed' if self.closed else ''} {self._config}>"


# ---------------------------------------------------------------------------
# Consumer
# ---------------------------------------------------------------------------


class Consumer(_Closing):
    """Consumes records from a broker's topics.

    Args:
        broker: the :class:`Broker` (kept referenced by the consumer).
        config: consumer config keys passed verbatim.
        **kw: config keys with ``_`` for ``.``; ``group_id`` is
            ``group.id``, ``delivery`` is ``delivery.mode``.

    Either :meth:`subscribe` (group membership) or :meth:`assign` (manual),
    then :meth:`poll` / :meth:`poll_batch` / iterate. The library serialises
    calls on one consumer; :meth:`close` or :meth:`destroy` from another thread
    ends an iteration, and a call racing with them raises :class:`ClosedError`.

    :meth:`poll` crosses into the library once per batch: the library *lends*
    up to ``max.poll.records`` records (``kofka_poll_lend``), poll() hands them
    out one at a time, and the next call into the library says how many were
    handed out. Only those count as returned — for commits, :meth:`position`,
    :meth:`close` and a transaction's offsets — so a process that dies loses
    nothing it had not handed out.
    """

    def __init__(self, broker: Broker, config: Optional[Mapping[str, Any]] = None, **kw: Any) -> None:
        self._handle: Any = None
        self._broker = broker
        self._config = _merge_config(config, kw)
        try:
            self._max_poll = max(1, int(self._config.get("max.poll.records", "500")))
        except ValueError:
            self._max_poll = 500  # the library rejects the value below
        # Records the library lent (see the class docstring) and how many poll() handed out.
        # The lock is held by poll() (also while it waits inside the library with nothing
        # lent: `_waiting`) and by every call that settles first.
        self._lent: List[Message] = []
        self._handed = 0
        self._lent_until = 0   # time.monotonic_ns() past which the library must be called again
        self._window = ctypes.c_uint64(0)
        self._lend_lock = threading.RLock()
        self._waiting = False
        self._lend_out = (ctypes.POINTER(_ffi.kofka_message) * self._max_poll)()
        self._lend_count = ctypes.c_size_t(0)
        cfg = _config_array(self._config)
        out = _ffi.ConsumerP()
        _call(_lib.kofka_consumer_new, broker._h(), cfg.pointer(), ctypes.byref(out))
        self._handle = out

    @property
    def broker(self) -> Broker:
        """The broker this consumer reads from."""
        return self._broker


    def _lend(self, ms: int) -> List[Message]:
        """Settles what poll() handed out of the last lend and lends the next records (waiting
        up to ``ms`` for the first); with ``_lend_lock`` held."""
        settle, self._lent, self._handed = self._handed, [], 0
        arr, count = self._lend_out, self._lend_count
        rc = _lib.kofka_poll_lend(self._h(), settle, ms, arr, len(arr) if ms >= 0 else 0, ctypes.byref(count),
                                  ctypes.byref(self._window))
        if rc != _ffi.KOFKA_OK:
            raise _error_for(rc, _last_error())
        n = count.value
        # hand the lend out until a heartbeat or an automatic commit is due (the library says when)
        self._lent_until = time.monotonic_ns() + min(self._window.value, 1 << 62)
        msgs: List[Message] = []
        try:
            for i in range(n):
                msgs.append(_message_from(arr[i].contents))
        finally:
            for i in range(n):
                _lib.kofka_message_free(arr[i])
        self._lent = msgs
        return msgs

    def _settled(self, call: Callable[..., Any], *args: Any) -> Any:
        """Runs ``call(*args)`` once what poll() handed out is settled with the library."""
        lock = self._lend_lock
        while not lock.acquire(timeout=0.002):
            if self._waiting:
                # A poll waits inside the library with nothing lent: nothing to settle, and a
                # call on this thread (a close above all) must not wait for that poll.
                return call(*args)
        try:
            if self._lent and self._handle:
                self._lend(-1)   # settle only
            return call(*args)
        finally:
            lock.release()

    def subscribe(self, topics: Union[str, Iterable[str]]) -> None:
        """Join ``group.id`` for these topics; the group assigns partitions."""
        names = [topics] if isinstance(topics, str) else list(topics)
        arr = _CStrings(names)
        self._settled(lambda: _call(_lib.kofka_subscribe, self._h(), arr.pointer(), arr.count))

    def assign(self, topic: str, partitions: Union[int, Iterable[int]]) -> None:
        """Assign partitions of ``topic`` manually (no group membership); adds to earlier assignments."""
        parts = [partitions] if isinstance(partitions, int) else [int(p) for p in partitions]
        arr = (ctypes.c_int32 * max(len(parts), 1))(*parts)
        self._settled(lambda: _call(_lib.kofka_assign, self._h(), _enc(topic), arr, len(parts)))

    def _poll_once(self, ms: int) -> Tuple[bool, Optional[Message]]:
        lock = self._lend_lock
        lock.acquire()
        try:
            i = self._handed
            if i < len(self._lent) and time.monotonic_ns() < self._lent_until:
                self._handed = i + 1
                return True, self._lent[i]
            msgs = self._lend(0)
            if msgs:
                self._handed = 1
                return True, msgs[0]
            if ms == 0:
                return False, None
            # Nothing to lend now: wait for one record, returned at once.
            self._waiting = True
            try:
                return self._poll_one(ms)
            finally:
                self._waiting = False
        finally:
            lock.release()

    def _poll_one(self, ms: int) -> Tuple[bool, Optional[Message]]:
        out = ctypes.POINTER(_ffi.kofka_message)()
        rc = _lib.kofka_poll(self._h(), ms, ctypes.byref(out))
        if rc != _ffi.KOFKA_OK:
            raise _error_for(rc, _last_error())
        if not out:
            return False, None
        try:
            return True, _message_from(out.contents)
        finally:
            _lib.kofka_message_free(out)

    def poll(self, timeout: Optional[float] = None) -> Optional[Message]:
        """Return the next :class:`Message`, or None if none arrived within ``timeout`` seconds.

        None waits until a record arrives.
        """
        if timeout is not None and 0 <= timeout <= _SLICE_MS / 1000:
            return self._poll_once(_ms(timeout))[1]   # one slice: no deadline to keep
        return _wait_sliced(timeout, self._poll_once)

    def _poll_batch_once(self, ms: int, n: int) -> Tuple[bool, List[Message]]:
        with self._lend_lock:
            if self._lent:
                self._lend(-1)   # settle what poll() handed out; the rest comes again, in order
            self._waiting = True
            try:
                return self._poll_batch_raw(ms, n)
            finally:
                self._waiting = False

    def _poll_batch_raw(self, ms: int, n: int) -> Tuple[bool, List[Message]]:
        arr = (ctypes.POINTER(_ffi.kofka_message) * n)()
        count = ctypes.c_size_t(0)
        _call(_lib.kofka_poll_batch, self._h(), ms, arr, n, ctypes.byref(count))
        msgs: List[Message] = []
        try:
            for i in range(count.value):
                msgs.append(_message_from(arr[i].contents))
        finally:
            for i in range(count.value):
                _lib.kofka_message_free(arr[i])
        return bool(msgs), msgs

    def poll_batch(self, timeout: Optional[float] = None, max: Optional[int] = None) -> List[Message]:
        """Return up to ``max`` messages (default and cap: ``max.poll.records``).

        Returns an empty list when nothing arrived within ``timeout`` seconds
        (None: wait until something arrives).
        """
        n = self._max_poll if max is None else int(max)
        if n <= 0:
            raise ValueError("poll_batch: max must be positive")
        return _wait_sliced(timeout, lambda ms: self._poll_batch_once(ms, n))

    def __iter__(self) -> Iterator[Message]:
        """Yield messages forever, blocking for each; ends when the consumer is closed."""
        while True:
            try:
                done, msg = self._poll_once(_SLICE_MS)
            except ClosedError:
                if self.closed:
                    return
                raise
            if done and msg is not None:
                yield msg

    def commit(self) -> None:
        """Commit the position after every message returned so far, for every assigned partition."""
        self._settled(lambda: _call(_lib.kofka_commit, self._h()))

    def commit_message(self, msg: Message) -> None:
        """Commit ``msg.offset + 1`` for the message's partition."""
        topic = _enc(msg.topic)
        m = _ffi.kofka_message()
        m.topic = topic
        m.partition = msg.partition
        m.offset = msg.offset
        m.timestamp_ms = msg.timestamp_ms
        _call(_lib.kofka_commit_message, self._h(), ctypes.byref(m))

    def committed(self, topic: str, partition: int) -> int:
        """The group's committed offset (next record to read) for a partition; -1 when none."""
        off = ctypes.c_int64()
        _call(_lib.kofka_committed, self._h(), _enc(topic), int(partition), ctypes.byref(off))
        return off.value

    def position(self, topic: str, partition: int) -> int:
        """The next offset this consumer will return for an assigned partition (-1 if not fetched yet)."""
        off = ctypes.c_int64()
        self._settled(lambda: _call(_lib.kofka_position, self._h(), _enc(topic), int(partition), ctypes.byref(off)))
        return off.value

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Set the position of an assigned partition (may equal the high watermark)."""
        self._settled(lambda: _call(_lib.kofka_seek, self._h(), _enc(topic), int(partition), int(offset)))

    def seek_to_committed(self) -> None:
        """Rewind every assigned partition to the group's committed offset."""
        self._settled(lambda: _call(_lib.kofka_seek_to_committed, self._h()))

    def close(self) -> None:
        """Graceful close: the delivery mode's final commit, leave the group, free.

        Closing twice (or after :meth:`destroy`) is harmless.
        """
        def close() -> None:
            if self._lent and self._handle:
                try:
                    self._lend(-1)   # what poll() handed out counts for the final commit
                except KofkaError:
                    pass             # the close below reports what is wrong
            h, self._handle = self._handle, None
            if h:
                _call(_lib.kofka_consumer_close, h)
        self._settled(close)

    def destroy(self) -> None:
        """Free the consumer as if its process died: no commit, no leave.

        The group notices after ``session.timeout.ms``.
        """
        h, self._handle = self._handle, None
        if h:
            _raw(_lib.kofka_consumer_destroy, h)

    def __repr__(self) -> str:
        return f"<kofka.Consumer{' closed' if self.closed else ''} {self._config}>"


# ---------------------------------------------------------------------------
# Plugins: Python interceptors and storage backends (modules that use the names above)
# ---------------------------------------------------------------------------

from . import interceptors as interceptors_module  # noqa: E402
from . import storage as storage_module  # noqa: E402
from .interceptors import ProducerRecord, interceptor_errors  # noqa: E402
from .storage import register_storage  # noqa: E402
