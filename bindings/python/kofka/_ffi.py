"""ctypes declarations for libkofka.so, mirroring ``include/kofka.h``.

Every function of the header is declared here with its ``argtypes`` and
``restype``. Each opaque handle gets its own pointer type so that passing a
producer where a consumer is expected fails in ctypes rather than in the
library. This module holds no behaviour: it finds the library, loads it and
describes its functions.

The library is looked up, in order, at:

1. the path in the environment variable ``KOFKA_LIBRARY`` (a file, or a folder
   holding ``libkofka.so``); when it is set and cannot be loaded, the import
   fails instead of silently loading another copy;
2. ``libkofka.so`` next to this package's ``__init__.py``;
3. the project's build folder: walking up from this package's folder to the
   first folder holding ``Package.swift``, then ``.build/release/libkofka.so``
   and ``.build/debug/libkofka.so``;
4. the system's library path (``ctypes.util.find_library("kofka")``, then
   ``libkofka.so``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint64,
    c_void_p,
)
from typing import Any, Callable, List, Optional, Tuple

LIBRARY_NAME = "libkofka.so"
ENV_VAR = "KOFKA_LIBRARY"

# ---------------------------------------------------------------------------
# Error codes (typedef enum kofka_err); the numeric values are stable.
# ---------------------------------------------------------------------------

kofka_err = c_int

KOFKA_OK = 0
KOFKA_ERR_INVALID_ARG = 1
KOFKA_ERR_INVALID_CONFIG = 2
KOFKA_ERR_INVALID_STATE = 3
KOFKA_ERR_UNKNOWN_TOPIC = 4
KOFKA_ERR_UNKNOWN_PARTITION = 5
KOFKA_ERR_TOPIC_EXISTS = 6
KOFKA_ERR_MSG_TOO_LARGE = 7
KOFKA_ERR_OFFSET_OUT_OF_RANGE = 8
KOFKA_ERR_NO_OFFSET = 9
KOFKA_ERR_TIMED_OUT = 10
KOFKA_ERR_STORAGE = 11
KOFKA_ERR_OUT_OF_ORDER_SEQUENCE = 12
KOFKA_ERR_PRODUCER_FENCED = 13
KOFKA_ERR_TXN_TIMED_OUT = 14
KOFKA_ERR_REBALANCED = 15
KOFKA_ERR_CLOSED = 16
KOFKA_ERR_UNSUPPORTED = 17
KOFKA_ERR_QUEUE_FULL = 18
KOFKA_ERR_BUSY = 19
KOFKA_ERR_PURGED = 20

KOFKA_PARTITION_ANY = -1

# ---------------------------------------------------------------------------
# Handles: one distinct pointer type per opaque struct. The library hands out
# tokens, not addresses (it checks each against its registry of live handles),
# so a handle is only ever passed back, never dereferenced.
# ---------------------------------------------------------------------------


class _Broker(Structure):
    """Opaque ``struct kofka_broker``."""


class _Producer(Structure):
    """Opaque ``struct kofka_producer``."""


class _Consumer(Structure):
    """Opaque ``struct kofka_consumer``."""


class _Server(Structure):
    """Opaque ``struct kofka_server``."""


BrokerP = POINTER(_Broker)
ProducerP = POINTER(_Producer)
ConsumerP = POINTER(_Consumer)
ServerP = POINTER(_Server)

# ---------------------------------------------------------------------------
# Records (field order and types exactly as in include/kofka.h).
# ---------------------------------------------------------------------------


class kofka_header(Structure):
    """``struct kofka_header``."""

    _fields_ = [
        ("name", c_char_p),  # NUL-terminated, not NULL
        ("value", c_void_p),
        ("value_len", c_size_t),
    ]


class kofka_record(Structure):
    """``struct kofka_record``."""

    _fields_ = [
        ("partition", c_int32),
        ("key", c_void_p),
        ("key_len", c_size_t),
        ("value", c_void_p),
        ("value_len", c_size_t),
        ("headers", POINTER(kofka_header)),
        ("header_count", c_size_t),
        ("timestamp_ms", c_int64),
        ("offset", c_int64),
        ("err", kofka_err),
    ]


class kofka_record_in(Structure):
    """``struct kofka_record`` as ``kofka_produce`` reads it, with ``key`` and ``value`` as
    ``char *``: a bytes object is assigned as is (ctypes keeps it referenced and points at its
    buffer), with no address computed in Python. Same layout as :class:`kofka_record`."""

    _fields_ = [(name, c_char_p if name in ("key", "value") else t) for name, t in kofka_record._fields_]



class kofka_lease(Structure):
    """``struct kofka_lease``: what ``kofka_produce_lease`` grants."""

    _fields_ = [
        ("credits", c_size_t),
        ("partitions", c_int32),
        ("max_kv_bytes", c_size_t),
        ("hold_ms", c_int32),
        ("txn", c_int64),
    ]


class kofka_message(Structure):
    """``struct kofka_message``."""

    _fields_ = [
        ("topic", c_char_p),
        ("partition", c_int32),
        ("offset", c_int64),
        ("timestamp_ms", c_int64),
        ("key", c_void_p),
        ("key_len", c_size_t),
        ("value", c_void_p),
        ("value_len", c_size_t),
        ("headers", POINTER(kofka_header)),
        ("header_count", c_size_t),
    ]


ConfigP = POINTER(c_char_p)  # const char *const *config

# typedef void (*kofka_delivery_cb)(kofka_producer *p, const char *topic,
#     const kofka_record *record, void *msg_opaque, void *cb_opaque);
# Every parameter as a plain address: ctypes builds no bytes object and no pointer object per
# report (the binding reads topic and record only for the reports a callback waits for).
kofka_delivery_cb = CFUNCTYPE(None, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p)

# ---------------------------------------------------------------------------
# Plugins: interceptors and storage backends (include/kofka.h, "Plugins").
# Pointer parameters that carry bytes with a length are c_void_p, so that
# ctypes does not stop at a NUL byte.
# ---------------------------------------------------------------------------

# void (*on_send)(void *opaque, const char *topic, kofka_record *record);
kofka_on_send = CFUNCTYPE(None, c_void_p, c_char_p, POINTER(kofka_record))
# void (*on_acknowledgement)(void *opaque, const char *topic, const kofka_record *record);
kofka_on_acknowledgement = CFUNCTYPE(None, c_void_p, c_char_p, POINTER(kofka_record))
# void (*on_consume)(void *opaque, const kofka_message *message);
kofka_on_consume = CFUNCTYPE(None, c_void_p, POINTER(kofka_message))
# void (*on_commit)(void *opaque, const char *group_id, const char *topic, int32_t partition,
#                   int64_t offset, kofka_err err);
kofka_on_commit = CFUNCTYPE(None, c_void_p, c_char_p, c_char_p, c_int32, c_int64, kofka_err)
# void (*on_close)(void *opaque);
kofka_on_close = CFUNCTYPE(None, c_void_p)


class kofka_interceptors(Structure):
    """``struct kofka_interceptors``."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("opaque", c_void_p),
        ("on_send", kofka_on_send),
        ("on_acknowledgement", kofka_on_acknowledgement),
        ("on_consume", kofka_on_consume),
        ("on_commit", kofka_on_commit),
        ("on_close", kofka_on_close),
    ]


class kofka_stored_record(Structure):
    """``struct kofka_stored_record`` (lengths are -1 for "none")."""

    _fields_ = [
        ("offset", c_int64),
        ("txn", c_int64),
        ("timestamp_ms", c_int64),
        ("key", c_void_p),
        ("key_len", c_int64),
        ("value", c_void_p),
        ("value_len", c_int64),
        ("headers", c_void_p),
        ("headers_len", c_int64),
    ]


# int (*kofka_storage_visit_kv)(void *ctx, const char *key, size_t key_len, const void *value, size_t value_len);
# void (*)(void *opaque, const char *line): one line of a conformance report.
kofka_conformance_line_cb = CFUNCTYPE(None, c_void_p, c_char_p)
kofka_storage_visit_kv = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t, c_void_p, c_size_t)
# int (*kofka_storage_visit_record)(void *ctx, const kofka_stored_record *record);
kofka_storage_visit_record = CFUNCTYPE(c_int, c_void_p, POINTER(kofka_stored_record))

_VoidPP = POINTER(c_void_p)
_I64P = POINTER(c_int64)


class kofka_storage_ops(Structure):
    """``struct kofka_storage_ops``: a storage backend as a table of functions."""

    _fields_ = [
        ("struct_size", c_size_t),
        # open(opaque, location, config, instance*, errstr, errstr_size)
        ("open", CFUNCTYPE(kofka_err, c_void_p, c_char_p, ConfigP, _VoidPP, c_void_p, c_size_t)),
        ("close", CFUNCTYPE(None, c_void_p)),
        ("begin", CFUNCTYPE(kofka_err, c_void_p, c_int, _VoidPP)),
        ("commit", CFUNCTYPE(kofka_err, c_void_p)),
        ("rollback", CFUNCTYPE(None, c_void_p)),
        # get(txn, key, key_len, value*, value_len*)
        ("get", CFUNCTYPE(kofka_err, c_void_p, c_void_p, c_size_t, _VoidPP, POINTER(c_size_t))),
        ("put", CFUNCTYPE(kofka_err, c_void_p, c_void_p, c_size_t, c_void_p, c_size_t)),
        ("del", CFUNCTYPE(kofka_err, c_void_p, c_void_p, c_size_t)),
        # scan(txn, lower, lower_len, upper, upper_len, visit, ctx)
        ("scan", CFUNCTYPE(kofka_err, c_void_p, c_void_p, c_size_t, c_void_p, c_size_t, kofka_storage_visit_kv, c_void_p)),
        # log_state(txn, pnum, start*, next*, bytes*)
        ("log_state", CFUNCTYPE(kofka_err, c_void_p, c_int64, _I64P, _I64P, _I64P)),
        # append(txn, pnum, txn_id, records, count, base*)
        ("append", CFUNCTYPE(kofka_err, c_void_p, c_int64, c_int64, POINTER(kofka_stored_record), c_size_t, _I64P)),
        # read(txn, pnum, from, below, max_count, visit, ctx, visited*)
        ("read", CFUNCTYPE(kofka_err, c_void_p, c_int64, c_int64, c_int64, c_size_t, kofka_storage_visit_record,
                           c_void_p, POINTER(c_size_t))),
        # truncate(txn, pnum, before, start*)
        ("truncate", CFUNCTYPE(kofka_err, c_void_p, c_int64, c_int64, _I64P)),
        # remove(txn, pnum, offsets, count)
        ("remove", CFUNCTYPE(kofka_err, c_void_p, c_int64, _I64P, c_size_t)),
        ("change_token", CFUNCTYPE(c_uint64, c_void_p)),
        ("wait_for_change", CFUNCTYPE(None, c_void_p, c_uint64, c_uint64)),
        ("wake_all", CFUNCTYPE(None, c_void_p)),
        ("reclaim_space", CFUNCTYPE(kofka_err, c_void_p, POINTER(c_int))),
    ]


# name -> (restype, argtypes)
SIGNATURES = {
    # errors and version
    "kofka_last_error": (c_char_p, []),
    "kofka_err_name": (c_char_p, [kofka_err]),
    "kofka_err_desc": (c_char_p, [kofka_err]),
    "kofka_version": (c_char_p, []),
    "kofka_err_is_retriable": (c_int, [kofka_err]),
    # broker
    "kofka_broker_open": (kofka_err, [c_char_p, ConfigP, POINTER(BrokerP)]),
    "kofka_broker_close": (kofka_err, [BrokerP]),
    # the Kafka wire protocol
    "kofka_server_start": (kofka_err, [BrokerP, c_char_p, ConfigP, POINTER(ServerP)]),
    "kofka_server_port": (kofka_err, [ServerP, POINTER(c_int)]),
    "kofka_server_stop": (kofka_err, [ServerP]),
    "kofka_topic_create": (kofka_err, [BrokerP, c_char_p, c_int32]),
    "kofka_topic_partitions": (kofka_err, [BrokerP, c_char_p, POINTER(c_int32)]),
    "kofka_watermarks": (kofka_err, [BrokerP, c_char_p, c_int32, POINTER(c_int64), POINTER(c_int64)]),
    "kofka_topic_create_with_config": (kofka_err, [BrokerP, c_char_p, c_int32, ConfigP]),
    "kofka_topic_config_set": (kofka_err, [BrokerP, c_char_p, ConfigP]),
    "kofka_topic_config_get": (kofka_err, [BrokerP, c_char_p, c_char_p, c_char_p, POINTER(c_size_t)]),
    "kofka_delete_records": (kofka_err, [BrokerP, c_char_p, c_int32, c_int64, POINTER(c_int64)]),
    "kofka_broker_maintain": (kofka_err, [BrokerP]),
    # producer
    "kofka_producer_new": (kofka_err, [BrokerP, ConfigP, POINTER(ProducerP)]),
    "kofka_producer_close": (kofka_err, [ProducerP, c_int]),
    "kofka_send": (kofka_err, [ProducerP, c_char_p, POINTER(kofka_record)]),
    "kofka_send_batch": (kofka_err, [ProducerP, c_char_p, POINTER(kofka_record), c_size_t]),
    "kofka_send_packed": (kofka_err, [ProducerP, c_char_p, c_int32, c_void_p, c_void_p, c_char_p, c_void_p, c_size_t,
                                      c_void_p, c_void_p, c_void_p]),
    "kofka_produce": (kofka_err, [ProducerP, c_char_p, POINTER(kofka_record_in), c_void_p]),
    "kofka_produce_lease": (kofka_err, [ProducerP, c_char_p, c_size_t, POINTER(kofka_lease)]),
    "kofka_produce_packed": (kofka_err, [ProducerP, c_char_p, POINTER(kofka_lease), c_char_p, c_void_p, c_char_p, c_void_p,
                                         c_void_p, c_void_p, c_size_t]),
    "kofka_producer_set_delivery_cb": (kofka_err, [ProducerP, kofka_delivery_cb, c_void_p]),
    "kofka_producer_set_ready_flag": (kofka_err, [ProducerP, POINTER(c_int32)]),
    "kofka_producer_poll": (c_int, [ProducerP, c_int]),
    "kofka_flush": (kofka_err, [ProducerP, c_int]),
    "kofka_init_transactions": (kofka_err, [ProducerP, c_int]),
    "kofka_begin_transaction": (kofka_err, [ProducerP]),
    "kofka_send_offsets_to_transaction": (kofka_err, [ProducerP, ConsumerP, c_int]),
    "kofka_commit_transaction": (kofka_err, [ProducerP, c_int]),
    "kofka_abort_transaction": (kofka_err, [ProducerP, c_int]),
    "kofka_txn_requires_abort": (c_int, [ProducerP]),
    # consumer
    "kofka_consumer_new": (kofka_err, [BrokerP, ConfigP, POINTER(ConsumerP)]),
    "kofka_subscribe": (kofka_err, [ConsumerP, ConfigP, c_size_t]),
    "kofka_assign": (kofka_err, [ConsumerP, c_char_p, POINTER(c_int32), c_size_t]),
    "kofka_poll": (kofka_err, [ConsumerP, c_int, POINTER(POINTER(kofka_message))]),
    "kofka_poll_batch": (
        kofka_err,
        [ConsumerP, c_int, POINTER(POINTER(kofka_message)), c_size_t, POINTER(c_size_t)],
    ),
    "kofka_poll_lend": (
        kofka_err,
        [ConsumerP, c_size_t, c_int, POINTER(POINTER(kofka_message)), c_size_t, POINTER(c_size_t), POINTER(c_uint64)],
    ),
    "kofka_message_free": (None, [POINTER(kofka_message)]),
    "kofka_commit": (kofka_err, [ConsumerP]),
    "kofka_commit_message": (kofka_err, [ConsumerP, POINTER(kofka_message)]),
    "kofka_committed": (kofka_err, [ConsumerP, c_char_p, c_int32, POINTER(c_int64)]),
    "kofka_position": (kofka_err, [ConsumerP, c_char_p, c_int32, POINTER(c_int64)]),
    "kofka_seek": (kofka_err, [ConsumerP, c_char_p, c_int32, c_int64]),
    "kofka_seek_to_committed": (kofka_err, [ConsumerP]),
    "kofka_consumer_close": (kofka_err, [ConsumerP]),
    "kofka_consumer_destroy": (None, [ConsumerP]),
    # plugins
    "kofka_interceptors_add": (kofka_err, [BrokerP, c_char_p, POINTER(kofka_interceptors)]),
    "kofka_interceptors_register": (kofka_err, [c_char_p, POINTER(kofka_interceptors)]),
    "kofka_storage_register": (kofka_err, [c_char_p, POINTER(kofka_storage_ops), c_void_p]),
    "kofka_storage_set_error": (None, [c_char_p]),
    "kofka_storage_conformance": (kofka_err, [c_char_p, ConfigP, c_char_p, kofka_conformance_line_cb, c_void_p, POINTER(c_int)]),
}

# The four functions every build exports; without them the package cannot work.
REQUIRED = ("kofka_last_error", "kofka_err_name", "kofka_err_desc", "kofka_version")


class MissingSymbol(Exception):
    """Raised by the stand-in for a function this build of libkofka.so does not export."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(f"{path} does not export {name} (this build of the library lacks it)")
        self.symbol = name


def _missing(name: str, path: str) -> Callable[..., Any]:
    def stub(*_args: Any) -> Any:
        raise MissingSymbol(name, path)

    stub.__name__ = name
    return stub


def _candidates() -> Tuple[Optional[str], List[str]]:
    """(explicit KOFKA_LIBRARY path or None, ordered fallback candidates)."""
    explicit = os.environ.get(ENV_VAR) or None
    if explicit and os.path.isdir(explicit):
        explicit = os.path.join(explicit, LIBRARY_NAME)
    here = os.path.dirname(os.path.abspath(__file__))
    found: List[str] = [os.path.join(here, LIBRARY_NAME)]
    d = here
    while True:
        if os.path.isfile(os.path.join(d, "Package.swift")):
            found.append(os.path.join(d, ".build", "release", LIBRARY_NAME))
            found.append(os.path.join(d, ".build", "debug", LIBRARY_NAME))
            break
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    system = ctypes.util.find_library("kofka")
    if system:
        found.append(system)
    found.append(LIBRARY_NAME)
    return explicit, found


def _open(path: str) -> ctypes.CDLL:
    # RTLD_GLOBAL: plugin libraries (plugin.library.paths, libkofka_SCHEME.so) are built
    # without -lkofka and find the kofka_* functions they call in the library that loads them.
    return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def load() -> Tuple[ctypes.CDLL, str]:
    """Find and load libkofka.so; return (library, path it was loaded from).

    Raises ImportError naming every place tried when none loads.
    """
    explicit, candidates = _candidates()
    if explicit is not None:
        try:
            return _open(explicit), explicit
        except OSError as e:
            raise ImportError(
                f"kofka: cannot load the library named by {ENV_VAR}={os.environ.get(ENV_VAR)!r}: {e}"
            ) from e
    tried: List[str] = []
    for path in candidates:
        is_bare = os.sep not in path
        if not is_bare and not os.path.exists(path):
            tried.append(f"{path} (not found)")
            continue
        try:
            return _open(path), path
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise ImportError(
        "kofka: cannot find libkofka.so. Set "
        + ENV_VAR
        + " to its path, or build it with `swift build`. Tried, in order:\n  "
        + "\n  ".join([f"${ENV_VAR} (not set)"] + tried)
    )


def bind(lib: ctypes.CDLL, path: str) -> Any:
    """Set restype/argtypes on every function of the header.

    Returns a namespace whose attributes are the library functions; a function
    the loaded build does not export is replaced by a stand-in raising
    MissingSymbol, so the package imports against a partial build.
    """

    class _Lib:
        pass

    ns = _Lib()
    for name, (restype, argtypes) in SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if name in REQUIRED:
                raise ImportError(f"kofka: {path} does not export {name}; is it libkofka.so?")
            setattr(ns, name, _missing(name, path))
            continue
        fn.restype = restype
        fn.argtypes = argtypes
        setattr(ns, name, fn)
    return ns
