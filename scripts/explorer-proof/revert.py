#!/usr/bin/env python3
"""Reverts one of issue 11's fixes 1-4 in a Kofka checkout (for measuring how fast the explorer finds it)."""
import sys, re
root, which = sys.argv[1], sys.argv[2]
def edit(path, a, b):
    p = f"{root}/{path}"
    s = open(p).read()
    assert a in s, (path, a[:60])
    open(p, "w").write(s.replace(a, b, 1))
if which == "1":
    # abort keeps the epoch and the sequence numbers; the window matches a retry from any transaction
    edit("Sources/Kofka/Producer+Transactions.swift", "startEpoch(try broker.abortTransaction(id))",
         "_ = try broker.abortTransaction(id); state.withLock { $0.txn = .ready }")
    edit("Sources/Kofka/Transactions.swift", "            return try Transactions.bumpEpoch(w, pid: id.pid, &ps)\n        }\n    }\n\n    /// Adds a consumer",
         "            try w.put(Keys.producer(id.pid), ps.encode())\n            return (id.pid, id.epoch)\n        }\n    }\n\n    /// Adds a consumer")
    edit("Sources/Kofka/Append.swift", "guard b.txn == id.txn else {", "guard b.txn == id.txn || true else {")
elif which == "2":
    # abort flushes (ignoring its timeout) instead of purging, and a queued batch goes into whatever transaction is open
    edit("Sources/Kofka/Producer+Transactions.swift",
         "queue.purge(txn: id.txn, KofkaError(.purged,", "_ = try? flush(timeout: timeout, handler); if false { queue.purge(txn: id.txn, KofkaError(.purged,")
    edit("Sources/Kofka/Producer+Transactions.swift", "it was not written\"))", "it was not written\")) }")
    edit("Sources/Kofka/Producer.swift", "if let q = queuedIn, q != t { throw purged(q) }\n                    txn = t", "txn = t")
elif which == "3":
    # a partition lost inside a transaction is dropped silently; a failed send_offsets leaves the transaction committable
    edit("Sources/Kofka/Consumer.swift", "if !s.revokedWithUncommitted.isEmpty {", "if false && !s.revokedWithUncommitted.isEmpty {")
    edit("Sources/Kofka/Producer+Transactions.swift", "            case .busy, .closed: break", "            case .busy, .closed, .rebalanced: break")
elif which == "4":
    # offsets pending in a dead instance's expired transaction block the partition for good
    edit("Sources/Kofka/Groups.swift", "guard try Transactions.expireIfDue(w, pid: pid, now: now) else { return false }", "return false")
else:
    sys.exit("which: 1-4")
