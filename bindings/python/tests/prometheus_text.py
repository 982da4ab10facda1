"""A strict parser of the Prometheus text exposition format (0.0.4), for the metrics plugin's
tests (the same rules as Tests/c/prometheus.h): every line a comment or a sample, TYPE before a
family's samples, a family's samples together, histogram buckets cumulative ending with
le="+Inf" equal to _count."""

from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Tuple

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL},?)*)\}})? (\S+)(?: (-?\d+))?$")
LABELS = re.compile(LABEL)
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}

Labels = Tuple[Tuple[str, str], ...]


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], v)


def _value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}[text]
    return float(text)


class Exposition:
    """The parsed samples: ``value(name, **labels)``, ``total(name)``; families and their types."""

    def __init__(self) -> None:
        self.types: Dict[str, str] = {}
        self.samples: List[Tuple[str, Labels, float]] = []

    def value(self, name: str, **labels: str) -> Optional[float]:
        key = tuple(sorted(labels.items()))
        for n, ls, v in self.samples:
            if n == name and tuple(sorted(ls)) == key:
                return v
        return None

    def total(self, name: str) -> float:
        return sum(v for n, _, v in self.samples if n == name)


def parse(text: str) -> Exposition:
    """Parse ``text``; raise ValueError naming the line and the rule it breaks."""
    doc = Exposition()
    if not text.endswith("\n"):
        raise ValueError("the text does not end with a newline")
    closed = set()
    current: Optional[str] = None
    for number, line in enumerate(text.split("\n")[:-1], 1):
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                if not re.fullmatch(NAME, parts[2]):
                    raise ValueError(f"line {number}: bad name in {parts[1]}")
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise ValueError(f"line {number}: bad TYPE")
                    if parts[2] in doc.types:
                        raise ValueError(f"line {number}: a second TYPE for {parts[2]}")
                    doc.types[parts[2]] = parts[3]
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError(f"line {number}: not a sample: {line!r}")
        name, labels_text, value = m.group(1), m.group(2) or "", m.group(5)
        labels = tuple((k, _unescape(v)) for k, v in LABELS.findall(labels_text))
        family = name if name in doc.types else None
        for suffix in ("_bucket", "_sum", "_count"):
            if family is None and name.endswith(suffix) and doc.types.get(name[: -len(suffix)]) == "histogram":
                family = name[: -len(suffix)]
        if family is None:
            raise ValueError(f"line {number}: {name} comes before its family's TYPE")
        if family in closed:
            raise ValueError(f"line {number}: the samples of {family} are not together")
        if current is not None and current != family:
            closed.add(current)
        current = family
        doc.samples.append((name, labels, _value(value)))
    _check_histograms(doc)
    return doc


def _check_histograms(doc: Exposition) -> None:
    for family, kind in doc.types.items():
        if kind != "histogram":
            continue
        series: Dict[Labels, List[Tuple[float, float]]] = {}
        for name, labels, value in doc.samples:
            if name == family + "_bucket":
                le = dict(labels).get("le")
                if le is None:
                    raise ValueError(f"{name} without le")
                rest = tuple(kv for kv in labels if kv[0] != "le")
                series.setdefault(rest, []).append((_value(le), value))
        for rest, buckets in series.items():
            les = [le for le, _ in buckets]
            counts = [c for _, c in buckets]
            if les != sorted(les) or len(set(les)) != len(les):
                raise ValueError(f"{family}{dict(rest)}: le does not increase")
            if counts != sorted(counts):
                raise ValueError(f"{family}{dict(rest)}: buckets are not cumulative: {counts}")
            if les[-1] != math.inf:
                raise ValueError(f"{family}{dict(rest)}: the buckets do not end with le=\"+Inf\"")
            count = doc.value(family + "_count", **dict(rest))
            if count != counts[-1]:
                raise ValueError(f"{family}{dict(rest)}: le=\"+Inf\" is {counts[-1]}, _count is {count}")
            if doc.value(family + "_sum", **dict(rest)) is None:
                raise ValueError(f"{family}{dict(rest)}: no _sum")
