"""Storage backends written in Python, and :class:`DictStorage`, the reference one.

Kofka keeps every byte it needs in a *storage backend*: partition logs and a small key/value
map, behind a narrow protocol (``kofka_storage_ops`` in ``include/kofka.h``; Swift's
``StorageBackend``). Every delivery rule lives in the library above it: a backend only stores,
and makes each write transaction atomic and exclusive. :func:`register_storage` puts a Python
class behind that protocol, through ctypes callbacks, under a storage scheme::

    import kofka
    from kofka.storage import DictStorage

    kofka.register_storage("pydict", DictStorage)
    with kofka.Broker("pydict:orders") as broker:     # DictStorage("orders", {})
        ...

The protocol, as Python sees it (see :class:`StorageBackend` and :class:`StorageTransaction`;
keys and values are ``bytes``, a record is a :class:`StoredRecord`):

* ``backend_class(location, config)`` opens a store: ``location`` is the storage string after
  ``SCHEME:``, ``config`` the broker's config as a ``dict`` of ``str``. ``close()`` releases it.
* ``begin(writable)`` returns a transaction. A writable one excludes every other writer of the
  same store until it ends, and gives up with :class:`kofka.BusyError` after the backend's own
  timeout; a read-only one sees a consistent snapshot and runs beside the writer.
* A transaction has ``commit()``, ``rollback()``, ``get(key)``, ``put(key, value)``,
  ``delete(key)``, ``scan(lower, upper)``, ``log_state(pnum)``, ``append(pnum, txn_id,
  records)``, ``read(pnum, from_offset, below, max_count)``, ``truncate(pnum, before)`` and
  ``remove(pnum, offsets)``. ``commit()`` ends the transaction even when it raises (the adapter
  then calls ``rollback()``).
* Optional on the backend: ``change_token()``, ``wait_for_change(token, timeout)`` (seconds),
  ``wake_all()`` and ``reclaim_space()``; without them Kofka counts this process's commits.

Threads: Kofka calls a backend from several threads at once (producers, consumers, the
background cleaner); every call on one transaction comes from the thread that began it. The
callbacks take the GIL; a backend must use its own locks for what threads share (a lock's
``acquire`` and a condition's ``wait`` release the GIL while they block).

Errors: an exception raised by any method becomes ``KOFKA_ERR_STORAGE`` carrying
``"TypeName: message"`` (through ``kofka_storage_set_error``), except :class:`kofka.BusyError`,
:class:`kofka.StorageError` and :class:`kofka.ClosedError`, which keep their code; the
application sees a :class:`kofka.StorageError` (or that subclass) naming the scheme and the
operation. An exception never crosses into the library.
"""

from __future__ import annotations

import atexit
import bisect
import ctypes
import itertools
import sys
import threading
import time
import weakref
from typing import Any, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Type

from . import _ffi
from . import (
    BusyError,
    ClosedError,
    InvalidArgError,
    KofkaError,
    StorageError,
    _call,
    _config_array,
    _enc,
    _lib,
)

try:  # Python 3.8+: typing.Protocol
    from typing import Protocol
except ImportError:  # pragma: no cover
    Protocol = object  # type: ignore[misc,assignment]

__all__ = [
    "StoredRecord",
    "StorageBackend",
    "StorageTransaction",
    "register_storage",
    "registered_schemes",
    "DictStorage",
]


class StoredRecord(NamedTuple):
    """A record as a storage backend keeps it.

    ``key``, ``value`` and ``headers`` are ``bytes`` or ``None`` (none, distinct from empty);
    ``headers`` is Kofka's encoding of the record's headers, opaque to the backend.
    ``txn`` is the transaction that wrote it (0: none).
    """

    offset: int
    txn: int
    timestamp_ms: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Optional[bytes]

    @property
    def size(self) -> int:
        """Bytes the record holds: key, value and headers lengths (``None`` counts 0)."""
        return (len(self.key) if self.key is not None else 0) + (len(self.value) if self.value is not None else 0) + (
            len(self.headers) if self.headers is not None else 0
        )


class StorageTransaction(Protocol):
    """A transaction of a :class:`StorageBackend` (the methods Kofka calls on it)."""

    def commit(self) -> None:
        """Make every change visible at once, durably as the backend promises; end the transaction."""

    def rollback(self) -> None:
        """Discard every change and end the transaction (also ends a read)."""

    def get(self, key: bytes) -> Optional[bytes]:
        """The value under ``key``, or None."""

    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` (writable transactions)."""

    def delete(self, key: bytes) -> None:
        """Remove ``key``; no error if absent (writable transactions)."""

    def scan(self, lower: bytes, upper: bytes) -> Iterable[Tuple[bytes, bytes]]:
        """Every ``(key, value)`` with ``lower <= key < upper``, in ascending byte order."""

    def log_state(self, pnum: int) -> Tuple[int, int, int]:
        """``(log start offset, high watermark, bytes held)`` of partition ``pnum``; zeros
        for a partition never written. The high watermark never moves down."""

    def append(self, pnum: int, txn_id: int, records: Sequence[StoredRecord]) -> int:
        """Append ``records`` (their ``offset`` is the one each gets: base + i) at the high
        watermark, tagged with ``txn_id``; return the first one's offset."""

    def read(self, pnum: int, from_offset: int, below: int, max_count: int) -> Iterable[StoredRecord]:
        """Up to ``max_count`` records held with ``from_offset <= offset < below``, in offset
        order (removed offsets are simply absent)."""

    def truncate(self, pnum: int, before: int) -> int:
        """Delete every record below ``before`` and make it the log start (clamped to the high
        watermark; at or below the current start nothing changes); return the log start."""

    def remove(self, pnum: int, offsets: Sequence[int]) -> None:
        """Remove the records at ``offsets`` (ascending); others are ignored; neither the log
        start nor the high watermark moves."""


class StorageBackend(Protocol):
    """What :func:`register_storage` expects of a backend class (its instances)."""

    def __init__(self, location: str, config: Mapping[str, str]) -> None:
        """Open the store at ``location`` with the broker's ``config``."""

    def begin(self, writable: bool) -> StorageTransaction:
        """Begin a transaction: the exclusive writer, or a read snapshot."""

    def close(self) -> None:
        """Release the store; no call on it follows."""


# ---------------------------------------------------------------------------
# The adapter: a kofka_storage_ops table of ctypes callbacks over a Python class
# ---------------------------------------------------------------------------

_instances: Dict[int, Any] = {}          # instance handle -> backend object
_txns: Dict[int, "_TxnSlot"] = {}         # transaction handle -> its slot
_handles = itertools.count(1)            # handle values (never 0 = NULL)
_registered: Dict[str, Tuple[Any, List[Any], type]] = {}   # scheme -> (ops, callbacks, class), kept forever
_registry_lock = threading.Lock()
_reported: Dict[Tuple[str, str], bool] = {}


class _TxnSlot:
    """A transaction as the library holds it, with the bytes of the last ``get`` (the library
    may read them until its next call on the transaction)."""

    __slots__ = ("txn", "keep")

    def __init__(self, txn: Any) -> None:
        self.txn = txn
        self.keep: Optional[bytes] = None


_KEEP_CODES = (_ffi.KOFKA_ERR_BUSY, _ffi.KOFKA_ERR_STORAGE, _ffi.KOFKA_ERR_CLOSED)


def _describe(e: BaseException) -> str:
    if isinstance(e, KofkaError):
        return e.message
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _failed(e: BaseException) -> int:
    """The code for an exception raised by a backend, its message handed to the library."""
    code = e.code if isinstance(e, KofkaError) and e.code in _KEEP_CODES else _ffi.KOFKA_ERR_STORAGE
    try:
        _lib.kofka_storage_set_error(_describe(e).encode("utf-8", "replace"))
    except BaseException:  # pragma: no cover - the message is a courtesy
        pass
    return code


def _report_once(scheme: str, op: str, e: BaseException) -> None:
    """For calls that cannot return an error (close, rollback, wake_all, ...)."""
    if _reported.get((scheme, op)):
        return
    _reported[(scheme, op)] = True
    print(f"kofka: storage backend {scheme!r}: {op} raised {_describe(e)} (reported once)", file=sys.stderr)


def _bytes_at(ptr: Optional[int], n: int) -> bytes:
    return ctypes.string_at(ptr, n) if n > 0 and ptr else b""


def _opt_bytes(ptr: Optional[int], n: int) -> Optional[bytes]:
    """Bytes of a kofka_stored_record field: length -1 means none."""
    if n < 0:
        return None
    return ctypes.string_at(ptr, n) if n > 0 and ptr else b""


def _addr(b: bytes) -> Optional[int]:
    return ctypes.cast(b, ctypes.c_void_p).value


def _make_ops(scheme: str, backend_class: type) -> Tuple[Any, List[Any]]:
    """The ops table for backend_class and the callback objects it points at."""
    ops = _ffi.kofka_storage_ops()
    ops.struct_size = ctypes.sizeof(_ffi.kofka_storage_ops)
    fields = dict(_ffi.kofka_storage_ops._fields_)
    keep: List[Any] = []
    OK = _ffi.KOFKA_OK

    def slot(name: str):  # type: ignore[no-untyped-def]
        def install(fn):  # type: ignore[no-untyped-def]
            cb = fields[name](fn)
            keep.append(cb)
            setattr(ops, name, cb)
            return fn
        return install

    @slot("open")
    def open_(_opaque: Any, location: Optional[bytes], config: Any, instance: Any, errstr: Optional[int], errstr_size: int) -> int:
        try:
            pairs: Dict[str, str] = {}
            i = 0
            while config and config[i] is not None and config[i + 1] is not None:
                pairs[config[i].decode("utf-8", "replace")] = config[i + 1].decode("utf-8", "replace")
                i += 2
            obj = backend_class((location or b"").decode("utf-8", "replace"), pairs)
            h = next(_handles)
            _instances[h] = obj
            instance[0] = h
            return OK
        except BaseException as e:
            if errstr and errstr_size > 0:
                msg = _describe(e).encode("utf-8", "replace")[: errstr_size - 1]
                ctypes.memmove(errstr, msg + b"\0", len(msg) + 1)
            return e.code if isinstance(e, KofkaError) and e.code else _ffi.KOFKA_ERR_STORAGE

    def quietly(op: str, fn: Any) -> None:
        """For calls that cannot return an error: report the first failure on stderr."""
        try:
            fn()
        except BaseException as e:
            _report_once(scheme, op, e)

    @slot("close")
    def close(instance: Optional[int]) -> None:
        obj = _instances.pop(instance or 0, None)
        if obj is not None:
            quietly("close", obj.close)

    @slot("begin")
    def begin(instance: Optional[int], writable: int, txn: Any) -> int:
        try:
            obj = _instances.get(instance or 0)
            if obj is None:
                raise ClosedError(f"the {scheme} store is closed")
            t = obj.begin(bool(writable))
            h = next(_handles)
            _txns[h] = _TxnSlot(t)
            txn[0] = h
            return OK
        except BaseException as e:
            return _failed(e)

    @slot("commit")
    def commit(txn: Optional[int]) -> int:
        slot_ = _txns.pop(txn or 0, None)
        if slot_ is None:
            return _failed(StorageError("commit of a transaction that is not open"))
        try:
            slot_.txn.commit()
            return OK
        except BaseException as e:
            try:
                slot_.txn.rollback()   # commit ends the transaction, whatever happened
            except BaseException:
                pass
            return _failed(e)

    @slot("rollback")
    def rollback(txn: Optional[int]) -> None:
        slot_ = _txns.pop(txn or 0, None)
        if slot_ is not None:
            quietly("rollback", slot_.txn.rollback)

    def txn_of(txn: Optional[int]) -> _TxnSlot:
        slot_ = _txns.get(txn or 0)
        if slot_ is None:
            raise StorageError("a call on a transaction that is not open")
        return slot_

    @slot("get")
    def get(txn: Optional[int], key: Optional[int], key_len: int, value: Any, value_len: Any) -> int:
        try:
            s = txn_of(txn)
            v = s.txn.get(_bytes_at(key, key_len))
            if v is None:
                s.keep = None
                value[0] = None
                value_len[0] = 0
            else:
                b = bytes(v)
                s.keep = b
                value[0] = _addr(b)
                value_len[0] = len(b)
            return OK
        except BaseException as e:
            return _failed(e)

    @slot("put")
    def put(txn: Optional[int], key: Optional[int], key_len: int, value: Optional[int], value_len: int) -> int:
        try:
            txn_of(txn).txn.put(_bytes_at(key, key_len), _bytes_at(value, value_len))
            return OK
        except BaseException as e:
            return _failed(e)

    @slot("del")
    def delete(txn: Optional[int], key: Optional[int], key_len: int) -> int:
        try:
            txn_of(txn).txn.delete(_bytes_at(key, key_len))
            return OK
        except BaseException as e:
            return _failed(e)

    @slot("scan")
    def scan(txn: Optional[int], lower: Optional[int], lower_len: int, upper: Optional[int], upper_len: int,
             visit: Any, ctx: Optional[int]) -> int:
        try:
            for k, v in txn_of(txn).txn.scan(_bytes_at(lower, lower_len), _bytes_at(upper, upper_len)):
                kb, vb = bytes(k), bytes(v)
                if visit(ctx, kb, len(kb), vb, len(vb)):
                    break
            return OK
        except BaseException as e:
            return _failed(e)

    @slot("log_state")
    def log_state(txn: Optional[int], pnum: int, start: Any, next_: Any, nbytes: Any) -> int:
        try:
            s, n, b = txn_of(txn).txn.log_state(pnum)
            start[0], next_[0], nbytes[0] = int(s), int(n), int(b)
            return OK
        except BaseException as e:
            return _failed(e)

    @slot("append")
    def append(txn: Optional[int], pnum: int, txn_id: int, records: Any, count: int, base: Any) -> int:
        try:
            s = txn_of(txn)
            _, next_, _ = s.txn.log_state(pnum)
            recs = []
            for i in range(count):
                r = records[i]
                recs.append(StoredRecord(next_ + i, txn_id, r.timestamp_ms, _opt_bytes(r.key, r.key_len),
                                         _opt_bytes(r.value, r.value_len), _opt_bytes(r.headers, r.headers_len)))
            base[0] = int(s.txn.append(pnum, txn_id, recs))
            return OK
        except BaseException as e:
            return _failed(e)

    @slot("read")
    def read(txn: Optional[int], pnum: int, from_: int, below: int, max_count: int, visit: Any, ctx: Optional[int],
             visited: Any) -> int:
        n = 0
        try:
            rec = _ffi.kofka_stored_record()
            ref = ctypes.byref(rec)
            for r in txn_of(txn).txn.read(pnum, from_, below, max_count):
                if n >= max_count:
                    break
                key, value, headers = r.key, r.value, r.headers   # alive during the visit
                rec.offset, rec.txn, rec.timestamp_ms = r.offset, r.txn, r.timestamp_ms
                rec.key, rec.key_len = (None, -1) if key is None else (_addr(key), len(key))
                rec.value, rec.value_len = (None, -1) if value is None else (_addr(value), len(value))
                rec.headers, rec.headers_len = (None, -1) if headers is None else (_addr(headers), len(headers))
                n += 1
                if visit(ctx, ref):
                    break
            visited[0] = n
            return OK
        except BaseException as e:
            visited[0] = n
            return _failed(e)

    @slot("truncate")
    def truncate(txn: Optional[int], pnum: int, before: int, start: Any) -> int:
        try:
            start[0] = int(txn_of(txn).txn.truncate(pnum, before))
            return OK
        except BaseException as e:
            return _failed(e)

    @slot("remove")
    def remove(txn: Optional[int], pnum: int, offsets: Any, count: int) -> int:
        try:
            txn_of(txn).txn.remove(pnum, offsets[:count] if count else [])
            return OK
        except BaseException as e:
            return _failed(e)

    if callable(getattr(backend_class, "change_token", None)):
        @slot("change_token")
        def change_token(instance: Optional[int]) -> int:
            obj = _instances.get(instance or 0)
            try:
                return int(obj.change_token()) & 0xFFFFFFFFFFFFFFFF if obj is not None else 0
            except BaseException as e:
                _report_once(scheme, "change_token", e)
                return 0

    if callable(getattr(backend_class, "wait_for_change", None)):
        @slot("wait_for_change")
        def wait_for_change(instance: Optional[int], token: int, timeout_ns: int) -> None:
            obj = _instances.get(instance or 0)
            if obj is None:
                return
            try:
                obj.wait_for_change(token, timeout_ns / 1e9)
            except BaseException as e:
                _report_once(scheme, "wait_for_change", e)
                time.sleep(min(timeout_ns / 1e9, 0.002))

    if callable(getattr(backend_class, "wake_all", None)):
        @slot("wake_all")
        def wake_all(instance: Optional[int]) -> None:
            obj = _instances.get(instance or 0)
            if obj is not None:
                quietly("wake_all", obj.wake_all)

    if callable(getattr(backend_class, "reclaim_space", None)):
        @slot("reclaim_space")
        def reclaim_space(instance: Optional[int], more: Any) -> int:
            try:
                obj = _instances.get(instance or 0)
                if obj is None:
                    raise ClosedError(f"the {scheme} store is closed")
                more[0] = 1 if obj.reclaim_space() else 0
                return OK
            except BaseException as e:
                return _failed(e)

    return ops, keep


def register_storage(scheme: str, backend_class: Type[Any]) -> None:
    """Register ``backend_class`` as the storage backend of ``scheme``, process-wide.

    From then on ``kofka.Broker("SCHEME:location")`` (and every other face of Kofka in this
    process: C, plugins) opens ``backend_class(location, config)`` and calls it through the
    storage protocol (see the module documentation and :class:`StorageBackend`). A registration
    lasts as long as the process: the class and its callbacks are kept alive for good.

    Raises InvalidArgError for a bad scheme (``[a-z0-9.+-]{1,32}``, not ``memory`` or
    ``sqlite``) or one already registered, and TypeError when the class lacks ``begin`` or
    ``close``.
    """
    for method in ("begin", "close"):
        if not callable(getattr(backend_class, method, None)):
            raise TypeError(f"register_storage: {backend_class!r} has no {method}() method")
    with _registry_lock:
        if scheme in _registered:
            raise InvalidArgError(_ffi.KOFKA_ERR_INVALID_ARG, f"storage scheme '{scheme}' is already registered")
        ops, keep = _make_ops(scheme, backend_class)
        _call(_lib.kofka_storage_register, _enc(scheme), ctypes.byref(ops), None)
        _registered[scheme] = (ops, keep, backend_class)


def conformance(storage: str, config: Optional[Mapping[str, Any]] = None,
                only: Optional[str] = None) -> Tuple[int, List[str]]:
    """Run Kofka's storage conformance suite against the backend serving ``storage``.

    ``storage`` is ``"SCHEME:LOCATION"``: each check opens fresh stores at LOCATION plus a
    suffix and removes them afterwards. For a backend written in Python, register it first
    (:func:`register_storage`); the checks then call it through the C storage protocol from
    several threads at once, as brokers do. ``config`` is broker config for every store;
    ``only`` runs the checks whose name contains it. Returns ``(failed, lines)``: how many
    checks failed, and the report (``PASS``/``SKIP``/``FAIL`` lines, each failure indented).

    Raises InvalidArgError for a storage string that is not ``SCHEME:LOCATION`` or an
    unknown scheme, InvalidConfigError for an unknown key, and the error opening a first
    store raised (StorageError for a store that cannot be opened).
    """
    lines: List[str] = []

    def on_line(_opaque: Any, line: bytes) -> None:
        lines.append(line.decode("utf-8", "replace"))

    callback = _ffi.kofka_conformance_line_cb(on_line)
    cfg = _config_array({str(k): str(v) for k, v in (config or {}).items()})
    failed = ctypes.c_int(0)
    _call(_lib.kofka_storage_conformance, _enc(storage), cfg.pointer(), _enc(only) if only else None,
          callback, None, ctypes.byref(failed))
    return failed.value, lines


def registered_schemes() -> Dict[str, Type[Any]]:
    """The schemes registered from Python in this process, with their classes."""
    with _registry_lock:
        return {s: entry[2] for s, entry in _registered.items()}


def _python_scheme(storage: str) -> bool:
    """Whether a storage string names a scheme registered from Python."""
    scheme = storage.split(":", 1)[0]
    return scheme in _registered


# Brokers on Python backends are closed at interpreter exit, before the interpreter can no
# longer run callbacks: a library thread (the background cleaner) must not call into a Python
# backend that is being torn down.
_open_brokers: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _track(broker: Any) -> None:
    _open_brokers.add(broker)


@atexit.register
def _close_brokers_at_exit() -> None:
    for b in list(_open_brokers):
        try:
            b.close()
        except BaseException:
            pass


# ---------------------------------------------------------------------------
# DictStorage: the reference backend, in process memory
# ---------------------------------------------------------------------------


class _Log:
    """A partition log in a snapshot. ``records[i]`` is offset ``base + i`` for ``i <
    length`` (``None`` where a record was removed); entries past ``length`` are left over from a
    write that was rolled back and belong to no snapshot. A published _Log is never changed: a
    writer works on a copy of these fields, appends to the shared list past every snapshot's
    length, and copies the list before removing from it."""

    __slots__ = ("records", "base", "length", "start", "nbytes")

    def __init__(self, records: List[Optional[StoredRecord]], base: int, length: int, start: int, nbytes: int) -> None:
        self.records = records
        self.base = base
        self.length = length
        self.start = start
        self.nbytes = nbytes

    @property
    def next(self) -> int:
        return self.base + self.length

    def copy(self) -> "_Log":
        return _Log(self.records, self.base, self.length, self.start, self.nbytes)


class _Snapshot:
    """One committed state: never changed once published."""

    __slots__ = ("version", "kv", "keys", "logs")

    def __init__(self, version: int, kv: Dict[bytes, bytes], keys: List[bytes], logs: Dict[int, _Log]) -> None:
        self.version = version     # bumped by every commit that changed something
        self.kv = kv               # key/value map
        self.keys = keys           # kv's keys, sorted (bytes order)
        self.logs = logs           # partition logs by number


class _Store:
    """The state every DictStorage opened on one location shares."""

    def __init__(self) -> None:
        self.current = _Snapshot(0, {}, [], {})
        self.write_lock = threading.Lock()        # held by the one open write transaction
        self.changed = threading.Condition()      # guards current's publication and wakeups
        self.wakeups = 0


class _DictTxn:
    """A transaction of :class:`DictStorage` (see :class:`StorageTransaction`)."""

    def __init__(self, store: _Store, writable: bool) -> None:
        self._store = store
        self._snap = store.current
        self._writable = writable
        self._kv: Optional[Dict[bytes, bytes]] = None   # copy-on-write of the snapshot's map
        self._keys: Optional[List[bytes]] = None        # sorted keys of _kv, once it changed
        self._logs: Dict[int, _Log] = {}                # partitions this write touched
        self._owned: set = set()                        # partitions whose record list is this write's own copy
        self._changed = False
        self._open = True

    # -- ending ---------------------------------------------------------------

    def commit(self) -> None:
        """Publish the changes as the new snapshot (atomically) and end the transaction."""
        self._live()
        self._open = False
        if not self._writable:
            return
        try:
            if self._changed:
                kv = self._kv if self._kv is not None else self._snap.kv
                keys = self._keys if self._keys is not None else self._snap.keys
                logs = self._snap.logs
                if self._logs:
                    logs = dict(logs)
                    logs.update(self._logs)
                snap = _Snapshot(self._snap.version + 1, kv, keys, logs)
                with self._store.changed:
                    self._store.current = snap
                    self._store.wakeups += 1
                    self._store.changed.notify_all()
        finally:
            self._store.write_lock.release()

    def rollback(self) -> None:
        """Discard the changes and end the transaction."""
        if not self._open:
            return
        self._open = False
        if self._writable:
            self._store.write_lock.release()

    # -- key/value ------------------------------------------------------------

    def _live(self) -> None:
        if not self._open:
            raise StorageError("the transaction has ended")

    def _writing(self, op: str) -> None:
        self._live()
        if not self._writable:
            raise StorageError(f"{op} inside a read transaction")
        self._changed = True

    def get(self, key: bytes) -> Optional[bytes]:
        """The value under key, or None."""
        self._live()
        return (self._kv if self._kv is not None else self._snap.kv).get(key)

    def _mutable_kv(self) -> Dict[bytes, bytes]:
        if self._kv is None:
            self._kv = dict(self._snap.kv)
        return self._kv

    def _mutable_keys(self) -> List[bytes]:
        if self._keys is None:
            self._keys = list(self._snap.keys)
        return self._keys

    def put(self, key: bytes, value: bytes) -> None:
        """Store value under key."""
        self._writing("put")
        kv = self._mutable_kv()
        if key not in kv:
            bisect.insort(self._mutable_keys(), key)
        kv[key] = bytes(value)

    def delete(self, key: bytes) -> None:
        """Remove key (no error if absent)."""
        self._writing("delete")
        kv = self._mutable_kv()
        if key in kv:
            del kv[key]
            keys = self._mutable_keys()
            del keys[bisect.bisect_left(keys, key)]

    def scan(self, lower: bytes, upper: bytes) -> List[Tuple[bytes, bytes]]:
        """Every (key, value) with lower <= key < upper, ascending."""
        self._live()
        kv = self._kv if self._kv is not None else self._snap.kv
        keys = self._keys if self._keys is not None else self._snap.keys
        i, j = bisect.bisect_left(keys, lower), bisect.bisect_left(keys, upper)
        return [(k, kv[k]) for k in keys[i:j]]

    # -- partition logs -------------------------------------------------------

    def _log(self, pnum: int) -> Optional[_Log]:
        log = self._logs.get(pnum)
        return log if log is not None else self._snap.logs.get(pnum)

    def _work(self, pnum: int) -> _Log:
        """This write's own copy of the log's fields (created empty if new)."""
        log = self._logs.get(pnum)
        if log is None:
            base = self._snap.logs.get(pnum)
            log = base.copy() if base is not None else _Log([], 0, 0, 0, 0)
            if base is None:
                self._owned.add(pnum)
            self._logs[pnum] = log
        return log

    def _own(self, pnum: int, log: _Log) -> None:
        """Give the log a record list of its own (before removing from it)."""
        if pnum not in self._owned:
            log.records = log.records[: log.length]
            self._owned.add(pnum)

    def log_state(self, pnum: int) -> Tuple[int, int, int]:
        """(log start offset, high watermark, bytes held)."""
        self._live()
        log = self._log(pnum)
        return (0, 0, 0) if log is None else (log.start, log.next, log.nbytes)

    def append(self, pnum: int, txn_id: int, records: Sequence[StoredRecord]) -> int:
        """Append at the high watermark; return the first offset."""
        self._writing("append")
        log = self._work(pnum)
        base = log.next
        recs = log.records
        if len(recs) > log.length:   # left over from a write that was rolled back: no snapshot sees them
            del recs[log.length:]
        for i, r in enumerate(records):
            if r.offset != base + i or r.txn != txn_id:
                r = r._replace(offset=base + i, txn=txn_id)
            recs.append(r)
            log.nbytes += r.size
        log.length += len(records)
        return base

    def read(self, pnum: int, from_offset: int, below: int, max_count: int) -> Iterator[StoredRecord]:
        """Records held with from_offset <= offset < below, at most max_count, ascending."""
        self._live()
        log = self._log(pnum)
        if log is None or max_count <= 0:
            return
        recs, base = log.records, log.base
        lo = max(from_offset, log.start, base)
        hi = min(below, base + log.length)
        n = 0
        for i in range(lo - base, hi - base):
            r = recs[i]
            if r is None:
                continue
            yield r
            n += 1
            if n >= max_count:
                return

    def truncate(self, pnum: int, before: int) -> int:
        """Delete every record below before; return the log start."""
        self._writing("truncate")
        if self._log(pnum) is None:
            return 0
        log = self._work(pnum)
        target = min(before, log.next)
        if target <= log.start:
            return log.start
        cut = target - log.base
        for r in log.records[: cut]:
            if r is not None:
                log.nbytes -= r.size
        log.records = log.records[cut: log.length]
        self._owned.add(pnum)
        log.base = target
        log.length = len(log.records)
        log.start = target
        return target

    def remove(self, pnum: int, offsets: Sequence[int]) -> None:
        """Remove the records at offsets; the watermarks do not move."""
        self._writing("remove")
        if self._log(pnum) is None or not offsets:
            return
        log = self._work(pnum)
        self._own(pnum, log)
        for o in offsets:
            i = o - log.base
            if o >= log.start and 0 <= i < log.length:
                r = log.records[i]
                if r is not None:
                    log.nbytes -= r.size
                    log.records[i] = None


class DictStorage:
    """The reference storage backend, in Python: a sorted map and partition logs in process
    memory, for ``kofka.register_storage("pydict", DictStorage)``.

    Stores opened on the same non-empty location (``"pydict:orders"``) share one store, as
    processes share a SQLite file (here: the threads of one process); ``"pydict:"`` opens a
    private one. Contents live as long as the process.

    Threads: one writer at a time (``begin(True)`` waits up to :attr:`busy_timeout` seconds
    for the other, then raises :class:`kofka.BusyError`); readers never wait: each reads the
    snapshot committed when it began, while the writer prepares the next one (a commit
    publishes it with one reference assignment).

    >>> import kofka
    >>> kofka.register_storage("pydict", DictStorage)            # doctest: +SKIP
    >>> with kofka.Broker("pydict:doc") as b:                      # doctest: +SKIP
    ...     b.create_topic("t")
    """

    busy_timeout: float = 5.0
    """Seconds ``begin(True)`` waits for the current writer before raising BusyError."""

    _stores: Dict[str, _Store] = {}
    _stores_lock = threading.Lock()

    def __init__(self, location: str = "", config: Optional[Mapping[str, str]] = None) -> None:
        if location:
            with DictStorage._stores_lock:
                store = DictStorage._stores.get(location)
                if store is None:
                    store = DictStorage._stores[location] = _Store()
        else:
            store = _Store()
        self.location = location
        self._store = store
        self._closed = False

    def begin(self, writable: bool) -> _DictTxn:
        """A write transaction (exclusive; BusyError after busy_timeout) or a read snapshot."""
        if self._closed:
            raise ClosedError(f"the pydict store {self.location!r} is closed")
        if writable and not self._store.write_lock.acquire(timeout=self.busy_timeout):
            raise BusyError(f"the pydict store {self.location!r} stayed locked by another writer for {self.busy_timeout} s")
        return _DictTxn(self._store, writable)

    def change_token(self) -> int:
        """The version of the last committed snapshot that changed something."""
        return self._store.current.version

    def wait_for_change(self, token: int, timeout: float) -> None:
        """Block until a commit changes the version from token, wake_all, close, or timeout seconds."""
        store = self._store
        deadline = time.monotonic() + timeout
        with store.changed:
            seen = store.wakeups
            while store.current.version == token and store.wakeups == seen and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                store.changed.wait(left)

    def wake_all(self) -> None:
        """Wake every wait_for_change on this store."""
        with self._store.changed:
            self._store.wakeups += 1
            self._store.changed.notify_all()

    def close(self) -> None:
        """Close this handle (the store's contents stay for other handles on its location)."""
        self._closed = True
        self.wake_all()

    @classmethod
    def drop(cls, location: str) -> None:
        """Forget the shared store of ``location`` (handles still open keep using it)."""
        with cls._stores_lock:
            cls._stores.pop(location, None)

    def __repr__(self) -> str:
        return f"<kofka.storage.DictStorage {self.location!r}{' closed' if self._closed else ''}>"
