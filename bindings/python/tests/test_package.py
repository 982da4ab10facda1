"""Packaging promises: version, type hints marker, docstrings and annotations on public names."""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import re

import kofka
from conftest import PACKAGE_ROOT


def _declared_version():
    try:
        return importlib.metadata.version("kofka")
    except importlib.metadata.PackageNotFoundError:
        pyproject = os.path.join(PACKAGE_ROOT, "pyproject.toml")
        with open(pyproject, encoding="utf-8") as f:
            return re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)


def test_version_is_the_librarys_and_the_distributions():
    assert kofka.__version__ == kofka._lib.kofka_version().decode()
    assert kofka.__version__ == _declared_version()


def test_the_package_is_marked_typed():
    assert os.path.isfile(os.path.join(os.path.dirname(kofka.__file__), "py.typed"))


def _public_members(cls):
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            yield name, value.fget
        elif isinstance(value, (staticmethod, classmethod)):
            yield name, value.__func__
        elif inspect.isfunction(value):
            yield name, value


def test_every_public_name_has_a_docstring_and_annotations():
    undocumented, unannotated = [], []
    for name in kofka.__all__:
        obj = getattr(kofka, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not inspect.getdoc(obj):
                undocumented.append(name)
        if not inspect.isclass(obj):
            continue
        for member, fn in _public_members(obj):
            if not (fn.__doc__ or "").strip():
                undocumented.append(f"{name}.{member}")
            sig = inspect.signature(fn)
            if sig.return_annotation is inspect.Signature.empty or any(
                p.annotation is inspect.Parameter.empty for n, p in sig.parameters.items() if n not in ("self", "cls")
            ):
                unannotated.append(f"{name}.{member}")
    assert undocumented == []
    assert unannotated == []
