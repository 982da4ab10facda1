#!/usr/bin/env python3
"""Generates Sources/KofkaWire/Generated/Messages.swift from Kafka's message definitions.

Usage: python3 scripts/gen_wire_codecs.py [DEFINITIONS_DIR] [OUT_FILE]
       (defaults: ../shared/kafka-protocol beside the repository, Sources/KofkaWire/Generated/Messages.swift)

The definitions (Apache Kafka's clients/src/main/resources/common/message/*.json, Apache
License 2.0) are read as data; only the Swift produced from them is committed. Each message
becomes a struct with `init(from:version:)` and `encode(to:version:)` for every valid version:
fields present only in some versions, nullable versions, flexible versions (compact strings,
arrays and bytes, tagged fields) and fields that are never flexible (the request header's
ClientId) are handled as the definitions say. Unknown tagged fields are skipped on decode.
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "kafka-protocol")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "Sources", "KofkaWire", "Generated", "Messages.swift")

# The messages the protocol layer serves (and the two headers).
MESSAGES = [
    "RequestHeader", "ResponseHeader",
    "Produce", "Fetch", "ListOffsets", "Metadata", "OffsetCommit", "OffsetFetch", "FindCoordinator",
    "JoinGroup", "Heartbeat", "LeaveGroup", "SyncGroup", "DescribeGroups", "ListGroups", "ApiVersions",
    "CreateTopics", "DeleteTopics", "DeleteRecords", "InitProducerId", "OffsetForLeaderEpoch",
    "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "TxnOffsetCommit", "DescribeConfigs",
]

PRIM = {
    "int8": ("Int8", "0"), "int16": ("Int16", "0"), "int32": ("Int32", "0"), "int64": ("Int64", "0"),
    "uint16": ("UInt16", "0"), "float64": ("Double", "0"), "bool": ("Bool", "false"),
    "string": ("String", '""'), "bytes": ("[UInt8]", "[]"), "records": ("[UInt8]?", "nil"),
    "uuid": ("WireUUID", "WireUUID.zero"),
}
KEYWORDS = {"protocol", "default", "internal", "operator", "repeat", "return", "self", "type", "in", "is", "as"}


def load(path):
    text = open(path).read()
    text = "\n".join(l for l in text.splitlines() if not l.strip().startswith("//"))
    return json.loads(text)


def vrange(s):
    """'0+', '3-5', '7', 'none' -> (lo, hi) or None."""
    if s is None or s == "none":
        return None
    if s.endswith("+"):
        return (int(s[:-1]), 32767)
    if "-" in s:
        a, b = s.split("-")
        return (int(a), int(b))
    return (int(s), int(s))


def cond(r, var="v"):
    if r is None:
        return "false"
    lo, hi = r
    parts = []
    if lo > 0:
        parts.append(f"{var} >= {lo}")
    if hi < 32767:
        parts.append(f"{var} <= {hi}")
    return " && ".join(parts) if parts else "true"


def camel(name):
    n = name[0].lower() + name[1:]
    # leading acronyms: "ISR" -> "isr"
    m = re.match(r"^([A-Z]+)([A-Z][a-z].*)$", name)
    if m:
        n = m.group(1).lower() + m.group(2)
    elif name.isupper():
        n = name.lower()
    return f"`{n}`" if n in KEYWORDS else n


def plain(n):
    return n.strip("`")


class Field:
    def __init__(self, d, msg_flex):
        self.d = d
        self.name = d["name"]
        self.var = camel(self.name)
        self.type = d["type"]
        self.versions = vrange(d.get("versions"))
        self.nullable = vrange(d.get("nullableVersions"))
        self.tagged = vrange(d.get("taggedVersions"))
        self.tag = d.get("tag")
        fv = d.get("flexibleVersions")
        self.flex = vrange(fv) if fv is not None else msg_flex
        self.default = d.get("default")
        self.is_array = self.type.startswith("[]")
        self.elem = self.type[2:] if self.is_array else self.type
        self.is_struct = self.elem not in PRIM
        self.fields = d.get("fields")

    def swift_elem(self):
        return PRIM[self.elem][0] if not self.is_struct else self.elem

    def swift_type(self):
        if self.is_array:
            t = f"[{self.swift_elem()}]"
            return t + "?" if self.nullable else t
        if self.is_struct:
            return self.elem + "?" if self.tagged else self.elem
        if self.elem == "records":
            return "[UInt8]?"
        t = PRIM[self.elem][0]
        return t + "?" if self.nullable else t

    def swift_default(self):
        if self.is_array:
            return "nil" if (self.nullable and self.default == "null") else "[]"
        if self.is_struct:
            return "nil" if self.tagged else f"{self.elem}()"
        if self.elem == "records":
            return "nil"
        if self.nullable and self.default == "null":
            return "nil"
        if self.default is not None and self.elem in ("int8", "int16", "int32", "int64", "uint16"):
            v = self.default
            return str(int(v, 16)) if str(v).lower().startswith(("0x", "-0x")) else str(int(v))
        if self.default is not None and self.elem == "bool":
            return "true" if str(self.default).lower() == "true" else "false"
        if self.default is not None and self.elem == "float64":
            return str(float(self.default))
        if self.default is not None and self.elem == "string":
            return json.dumps(self.default)
        return PRIM[self.elem][1]


def read_prim(elem, compact, nullable):
    if elem in ("int8", "int16", "int32", "int64", "uint16", "float64", "bool", "uuid"):
        return {"int8": "r.int8()", "int16": "r.int16()", "int32": "r.int32()", "int64": "r.int64()",
                "uint16": "r.uint16()", "float64": "r.float64()", "bool": "r.bool()", "uuid": "r.uuid()"}[elem]
    if elem == "string":
        return f"r.{'nullableString' if nullable else 'string'}(compact: {compact})"
    if elem in ("bytes", "records"):
        return f"r.{'nullableBytes' if nullable or elem == 'records' else 'bytes'}(compact: {compact})"
    raise ValueError(elem)


def write_prim(elem, expr, compact, nullable):
    if elem in ("int8", "int16", "int32", "int64", "uint16", "float64", "bool", "uuid"):
        return f"w.{elem}({expr})"
    if elem == "string":
        return f"w.{'nullableString' if nullable else 'string'}({expr}, compact: {compact})"
    if elem in ("bytes", "records"):
        return f"w.{'nullableBytes' if nullable or elem == 'records' else 'bytes'}({expr}, compact: {compact})"
    raise ValueError(elem)


def gen_struct(name, fields_json, msg_flex, commons, indent, out, top=None):
    fields = [Field(f, msg_flex) for f in fields_json]
    p = " " * indent
    if top:
        out.append(f"{p}public struct {name}: Sendable, Hashable {{")
        out.append(f"{p}    public static let apiKey: Int16 = {top['apiKey']}")
        lo, hi = vrange(top["validVersions"])
        out.append(f"{p}    public static let versions: ClosedRange<Int16> = {lo}...{hi}")
        fl = vrange(top.get("flexibleVersions"))
        out.append(f"{p}    /// First version using compact encodings and tagged fields (Int16.max: none).")
        out.append(f"{p}    public static let firstFlexible: Int16 = {fl[0] if fl else 'Int16.max'}")
    else:
        out.append(f"{p}public struct {name}: Sendable, Hashable {{")
    nested_done = set()
    for f in fields:
        if f.is_struct and f.fields and f.elem not in nested_done:
            nested_done.add(f.elem)
            gen_struct(f.elem, f.fields, msg_flex, commons, indent + 4, out)
    for f in fields:
        out.append(f"{p}    /// {f.d.get('about', '').replace(chr(10), ' ')}")
        out.append(f"{p}    public var {f.var}: {f.swift_type()} = {f.swift_default()}")
    out.append(f"{p}    public init() {{}}")
    # decode
    out.append(f"{p}    public init(from r: inout WireReader, version v: Int16) throws {{")
    flex_c = cond(msg_flex)
    out.append(f"{p}        let flex = {flex_c}")
    out.append(f"{p}        _ = flex")
    for f in fields:
        if f.tagged:
            continue
        out.append(f"{p}        if {cond(f.versions)} {{")
        out.append(f"{p}            {gen_read(f, 'self.' + plain(f.var))}")
        out.append(f"{p}        }}")
    tagged = [f for f in fields if f.tagged]
    out.append(f"{p}        if flex {{")
    if not tagged:
        out.append(f"{p}            try r.taggedFields {{ _, _ in }}")
        out.append(f"{p}        }}")
        out.append(f"{p}    }}")
    else:
      out.append(f"{p}            try r.taggedFields {{ tag, r in")
      out.append(f"{p}                switch tag {{")
      for f in tagged:
          out.append(f"{p}                case {f.tag} where {cond(f.tagged)}: {gen_read(f, 'self.' + plain(f.var), tagged=True)}")
      out.append(f"{p}                default: break")
      out.append(f"{p}                }}")
      out.append(f"{p}            }}")
      out.append(f"{p}        }}")
      out.append(f"{p}    }}")
    # encode
    out.append(f"{p}    public func encode(to w: inout WireWriter, version v: Int16) {{")
    out.append(f"{p}        let flex = {flex_c}")
    out.append(f"{p}        _ = flex")
    for f in fields:
        if f.tagged:
            continue
        out.append(f"{p}        if {cond(f.versions)} {{")
        out.append(f"{p}            {gen_write(f, 'self.' + plain(f.var))}")
        out.append(f"{p}        }}")
    out.append(f"{p}        if flex {{")
    out.append(f"{p}            {'var' if tagged else 'let'} tags: [(UInt32, [UInt8])] = []")
    for f in tagged:
        dflt = f.swift_default()
        out.append(f"{p}            if {cond(f.tagged)} && self.{plain(f.var)} != {dflt} {{")
        out.append(f"{p}                var w = WireWriter()")
        out.append(f"{p}                {gen_write(f, 'self.' + plain(f.var), tagged=True)}")
        out.append(f"{p}                tags.append(({f.tag}, w.bytes))")
        out.append(f"{p}            }}")
    out.append(f"{p}            w.taggedFields(tags)")
    out.append(f"{p}        }}")
    out.append(f"{p}    }}")
    out.append(f"{p}}}")


def compact_expr(f):
    if f.flex is None:
        return "false"
    return "flex" if f.flex == (0, 32767) or True else "flex"


def gen_read(f, target, tagged=False):
    compact = "false" if f.flex is None else "flex"
    if tagged:
        compact = "true"
    nullable = f"({cond(f.nullable)})" if f.nullable else "false"
    if f.is_array:
        if f.is_struct:
            elem = f"try {f.elem}(from: &r, version: v)"
        else:
            elem = "try " + read_prim(f.elem, compact, False)
        return (f"if let n = try r.arrayCount(compact: {compact}, nullable: {nullable}) "
                f"{{ var a: [{f.swift_elem()}] = []; a.reserveCapacity(min(n, 1024)); for _ in 0..<n {{ a.append({elem}) }}; {target} = a }} "
                f"else {{ {target} = {'nil' if f.nullable else '[]'} }}")
    if f.is_struct:
        return f"{target} = try {f.elem}(from: &r, version: v)"
    if f.nullable or f.elem == "records":
        if f.elem == "records":
            return f"{target} = try {read_prim(f.elem, compact, True)}"
        return f"{target} = ({cond(f.nullable)}) ? try {read_prim(f.elem, compact, True)} : try {read_prim(f.elem, compact, False)}"
    return f"{target} = try {read_prim(f.elem, compact, False)}"


def gen_write(f, expr, tagged=False):
    compact = "false" if f.flex is None else "flex"
    if tagged:
        compact = "true"
    if f.is_array:
        if f.is_struct:
            ew = "e.encode(to: &w, version: v)"
        else:
            ew = write_prim(f.elem, "e", compact, False)
        if f.nullable:
            return (f"if let a = {expr} {{ w.arrayCount(a.count, compact: {compact}); for e in a {{ {ew} }} }} "
                    f"else {{ w.nullArray(compact: {compact}, nullable: {cond(f.nullable)}) }}")
        return f"w.arrayCount({expr}.count, compact: {compact}); for e in {expr} {{ {ew} }}"
    if f.is_struct:
        if f.tagged:
            return f"{expr}?.encode(to: &w, version: v)"
        return f"{expr}.encode(to: &w, version: v)"
    if f.elem == "records":
        return write_prim(f.elem, expr, compact, True)
    if f.nullable:
        return (f"if {cond(f.nullable)} {{ {write_prim(f.elem, expr, compact, True)} }} "
                f"else {{ {write_prim(f.elem, expr + ' ?? ' + PRIM[f.elem][1], compact, False)} }}")
    return write_prim(f.elem, expr, compact, False)


def main():
    out = ["// Generated by scripts/gen_wire_codecs.py from Apache Kafka's message definitions",
           "// (clients/src/main/resources/common/message, Apache License 2.0). Do not edit by hand:",
           "// run `python3 scripts/gen_wire_codecs.py` with the definitions beside the repository.",
           "// swiftlint:disable all", ""]
    for base in MESSAGES:
        kinds = ["Request", "Response"] if base not in ("RequestHeader", "ResponseHeader") else [""]
        for kind in kinds:
            name = base + kind
            d = load(os.path.join(SRC, name + ".json"))
            msg_flex = vrange(d.get("flexibleVersions"))
            commons = {c["name"]: c for c in d.get("commonStructs", [])}
            # resolve common struct fields in place
            def resolve(fields):
                for f in fields:
                    t = f["type"][2:] if f["type"].startswith("[]") else f["type"]
                    if t in commons and "fields" not in f:
                        f["fields"] = commons[t]["fields"]
                    if "fields" in f:
                        resolve(f["fields"])
            resolve(d["fields"])
            top = {"apiKey": d.get("apiKey", -1), "validVersions": d["validVersions"], "flexibleVersions": d.get("flexibleVersions")}
            gen_struct(name, d["fields"], msg_flex, commons, 0, out, top=top)
            out.append("")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fh:
        fh.write("\n".join(out) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
