"""Interceptors written in Python: hooks that observe (and may tag) what producers and
consumers do, as librdkafka's and Kafka's interceptors do.

An interceptor is any object with some of these methods (the others are never called, and cost
nothing)::

    class Audit:
        def on_send(self, topic, record):            # -> None, a ProducerRecord, or headers
            return record.headers + [("audited-by", b"me")]
        def on_acknowledgement(self, topic, result): # RecordMetadata, or the KofkaError
            ...
        def on_consume(self, message):               # a kofka.Message
            ...
        def on_commit(self, group, topic, partition, offset, error):   # error: None or KofkaError
            ...
        def on_close(self):
            ...

    broker.add_interceptor(Audit())

Every producer and consumer opened on the broker *afterwards* calls it (see
:meth:`kofka.Broker.add_interceptor`). When each hook runs, and on which thread, is written in
``include/kofka.h`` (``kofka_interceptors``): ``on_send`` on the sending thread before
partitioning; ``on_acknowledgement`` once per record with its final result, on the thread that
settles it (the sender's for ``send``, the one calling ``poll``/``flush`` for ``produce``);
``on_consume`` on the polling thread before the message is returned; ``on_commit`` after each
partition's offset commit; ``on_close`` when the broker closes.

A hook never changes a record's fate: an exception raised in a hook is printed on stderr the
first time for each (interceptor, hook), counted (:func:`interceptor_errors`), and otherwise
ignored; the record goes on as if the hook had returned nothing.

Hooks are ctypes callbacks: each takes the GIL while it runs (from library threads too) and
the callbacks live as long as the broker that holds them.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import traceback
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from . import _ffi
from . import (
    Broker,
    RecordMetadata,
    _call,
    _enc,
    _error_for,
    _lib,
    _message_from,
    _RecordBuilder,
)

__all__ = ["ProducerRecord", "interceptor_errors"]


class ProducerRecord(NamedTuple):
    """A record about to be sent, as an interceptor's ``on_send`` sees it.

    ``on_send`` may return a changed copy (``record._replace(value=...)``) to send instead.
    ``partition`` None lets the partitioner choose; ``timestamp_ms`` 0 means now; ``headers`` is
    a list of ``(name, bytes or None)`` pairs.
    """

    key: Optional[bytes]
    value: Optional[bytes]
    headers: List[Tuple[str, Optional[bytes]]]
    partition: Optional[int]
    timestamp_ms: int


_errors_lock = threading.Lock()
_error_count = 0
_reported: Dict[Tuple[int, str], bool] = {}


def interceptor_errors() -> int:
    """How many times a Python interceptor's hook has raised in this process (each was
    ignored: a hook never changes a record's fate; the first per hook was printed on stderr)."""
    with _errors_lock:
        return _error_count


def _hook_failed(name: str, hook: str, ident: int) -> None:
    """Count the exception being handled; print it on stderr the first time for this hook."""
    global _error_count
    with _errors_lock:
        _error_count += 1
        first = not _reported.get((ident, hook))
        _reported[(ident, hook)] = True
    if first:
        try:
            print(f"kofka: interceptor {name!r} raised in {hook} (ignored; reported once, later ones are only counted):",
                  file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        except BaseException:  # pragma: no cover - stderr is gone
            pass


def _b(ptr: Optional[int], n: int) -> Optional[bytes]:
    if not ptr:
        return None
    return ctypes.string_at(ptr, n) if n else b""


def _headers_of(rec: Any) -> List[Tuple[str, Optional[bytes]]]:
    out: List[Tuple[str, Optional[bytes]]] = []
    if rec.headers and rec.header_count:
        for i in range(rec.header_count):
            h = rec.headers[i]
            out.append(((h.name or b"").decode("utf-8", "replace"), _b(h.value, h.value_len)))
    return out


# What an on_send replacement points at, by thread: valid until the next on_send on the thread
# (the library copies a record's bytes as soon as the hook returns). Keyed by thread id rather
# than threading.local: a callback on a thread Python did not create gets a fresh thread state
# each time, and its threading.local would vanish when the hook returns.
_send_scratch: Dict[int, Any] = {}


def _make_hooks(obj: Any, name: str) -> Tuple[Any, List[Any]]:
    """The kofka_interceptors struct for obj's hook methods, and the callbacks it points at."""
    ic = _ffi.kofka_interceptors()
    ic.struct_size = ctypes.sizeof(_ffi.kofka_interceptors)
    keep: List[Any] = []
    ident = id(obj)

    def install(field: str, fn: Any) -> None:
        cb = dict(_ffi.kofka_interceptors._fields_)[field](fn)
        keep.append(cb)
        setattr(ic, field, cb)

    on_send = getattr(obj, "on_send", None)
    if callable(on_send):
        def send_hook(_opaque: Any, topic: Optional[bytes], record: Any) -> None:
            try:
                rec = record.contents
                seen = ProducerRecord(_b(rec.key, rec.key_len), _b(rec.value, rec.value_len), _headers_of(rec),
                                      None if rec.partition < 0 else rec.partition, rec.timestamp_ms)
                out = on_send((topic or b"").decode("utf-8", "replace"), seen)
                if out is None:
                    return
                if isinstance(out, ProducerRecord):
                    new = out
                elif isinstance(out, (list, tuple, Mapping)):
                    pairs = list(out.items()) if isinstance(out, Mapping) else list(out)
                    new = seen._replace(headers=pairs)
                else:
                    raise TypeError(f"on_send must return None, a ProducerRecord or headers, not {type(out).__name__}")
                builder = _RecordBuilder()
                staged = _ffi.kofka_record()
                builder.fill(staged, new.value, new.key, new.partition, new.timestamp_ms or None, new.headers or None)
                _send_scratch[threading.get_ident()] = (builder, staged)
                rec.partition, rec.timestamp_ms = staged.partition, staged.timestamp_ms
                rec.key, rec.key_len = staged.key, staged.key_len
                rec.value, rec.value_len = staged.value, staged.value_len
                rec.headers, rec.header_count = staged.headers, staged.header_count
            except BaseException:
                _hook_failed(name, "on_send", ident)

        install("on_send", send_hook)

    on_ack = getattr(obj, "on_acknowledgement", None)
    if callable(on_ack):
        def ack_hook(_opaque: Any, topic: Optional[bytes], record: Any) -> None:
            try:
                rec = record.contents
                t = (topic or b"").decode("utf-8", "replace")
                on_ack(t, RecordMetadata(t, rec.partition, rec.offset) if rec.err == _ffi.KOFKA_OK else _error_for(rec.err))
            except BaseException:
                _hook_failed(name, "on_acknowledgement", ident)

        install("on_acknowledgement", ack_hook)

    on_consume = getattr(obj, "on_consume", None)
    if callable(on_consume):
        def consume_hook(_opaque: Any, message: Any) -> None:
            try:
                on_consume(_message_from(message.contents))
            except BaseException:
                _hook_failed(name, "on_consume", ident)

        install("on_consume", consume_hook)

    on_commit = getattr(obj, "on_commit", None)
    if callable(on_commit):
        def commit_hook(_opaque: Any, group: Optional[bytes], topic: Optional[bytes], partition: int, offset: int,
                        err: int) -> None:
            try:
                on_commit((group or b"").decode("utf-8", "replace"), (topic or b"").decode("utf-8", "replace"),
                          partition, offset, None if err == _ffi.KOFKA_OK else _error_for(err))
            except BaseException:
                _hook_failed(name, "on_commit", ident)

        install("on_commit", commit_hook)

    on_close = getattr(obj, "on_close", None)
    if callable(on_close):
        def close_hook(_opaque: Any) -> None:
            try:
                on_close()
            except BaseException:
                _hook_failed(name, "on_close", ident)

        install("on_close", close_hook)

    return ic, keep


def _add(broker: Broker, obj: Any, name: Optional[str]) -> str:
    hooks = [h for h in ("on_send", "on_acknowledgement", "on_consume", "on_commit", "on_close") if callable(getattr(obj, h, None))]
    if not hooks:
        raise TypeError(f"add_interceptor: {obj!r} has none of on_send, on_acknowledgement, on_consume, on_commit, on_close")
    if name is None:
        name = f"python:{type(obj).__qualname__}@{id(obj):x}"
    ic, keep = _make_hooks(obj, name)
    _call(_lib.kofka_interceptors_add, broker._h(), _enc(name), ctypes.byref(ic))
    # The library calls these for as long as the broker or any producer or consumer opened on it
    # lives; producers and consumers keep the Broker object alive, so the Broker keeps them.
    broker._interceptors.append((name, obj, ic, keep))
    return name
