"""Build hook for the kofka Python package.

Metadata lives in pyproject.toml; this file only adds the build step that
compiles a self-contained ``libkofka.so`` (Swift standard library linked
statically) and ships it inside the package, next to ``kofka/__init__.py``,
where the loader looks right after ``KOFKA_LIBRARY``.

The Swift project is found, in order, at:

* ``$KOFKA_PROJECT_ROOT`` (a folder holding ``Package.swift``), for builds
  from a copied source tree or an unpacked sdist;
* the nearest folder above this file holding ``Package.swift`` (pip >= 21.3
  builds local directories in place, so ``../../`` works).

Other knobs (environment variables):

* ``KOFKA_SWIFT``: the swift executable (default: ``swift`` on PATH, then
  ``/opt/swift/usr/bin/swift``).
* ``KOFKA_PREBUILT_LIBRARY``: skip the build and ship this libkofka.so (and
  the plugin libraries found beside it).

The build runs ``swift build -c release --product kofka -Xswiftc
-static-stdlib --scratch-path <project>/.build-wheel``, then the same for each
plugin product (``kofka_metrics``; ``kofka_lmdb`` when the package has it),
plain C libraries that are shipped beside ``libkofka.so`` as
``libkofka_NAME.so`` (``kofka.plugin_path(NAME)``; a storage plugin is also
found there by its scheme). SwiftPM rebuilds only what changed, so repeated
installs reuse the first build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import List, Optional, Tuple

from setuptools import Command, setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:  # setuptools >= 70.1 ships bdist_wheel itself
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # older setuptools: the wheel package's
    try:
        from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]
    except ImportError:
        bdist_wheel = None  # type: ignore[assignment,misc]

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY_NAME = "libkofka.so"
SCRATCH = ".build-wheel"
# Plugin libraries shipped beside libkofka.so when the package declares them.
PLUGIN_PRODUCTS = ["kofka_metrics", "kofka_lmdb"]


def _project_root() -> str:
    env = os.environ.get("KOFKA_PROJECT_ROOT")
    if env:
        if not os.path.isfile(os.path.join(env, "Package.swift")):
            sys.exit(f"kofka build: KOFKA_PROJECT_ROOT={env!r} holds no Package.swift")
        return os.path.abspath(env)
    d = HERE
    while True:
        if os.path.isfile(os.path.join(d, "Package.swift")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            sys.exit(
                "kofka build: cannot find the Kofka project (a folder holding Package.swift) "
                f"above {HERE}; set KOFKA_PROJECT_ROOT to it, or KOFKA_PREBUILT_LIBRARY to a "
                "self-contained libkofka.so"
            )
        d = parent


def _swift() -> str:
    env = os.environ.get("KOFKA_SWIFT")
    if env:
        return env
    found = shutil.which("swift")
    if found:
        return found
    fallback = "/opt/swift/usr/bin/swift"
    if os.path.isfile(fallback):
        return fallback
    sys.exit("kofka build: no swift executable (not on PATH, not at /opt/swift/usr/bin/swift); set KOFKA_SWIFT")


def _plugin_products(root: str) -> List[str]:
    """The plugin products the package declares (kofka_metrics; kofka_lmdb once it exists)."""
    with open(os.path.join(root, "Package.swift"), encoding="utf-8") as f:
        manifest = f.read()
    return [name for name in PLUGIN_PRODUCTS if f'"{name}"' in manifest]


def build_library() -> Tuple[str, List[str]]:
    """Build libkofka.so and the plugin libraries (or take KOFKA_PREBUILT_LIBRARY and the
    plugins beside it); return their paths."""
    prebuilt = os.environ.get("KOFKA_PREBUILT_LIBRARY")
    if prebuilt:
        if not os.path.isfile(prebuilt):
            sys.exit(f"kofka build: KOFKA_PREBUILT_LIBRARY={prebuilt!r} is not a file")
        folder = os.path.dirname(os.path.abspath(prebuilt))
        plugins = [os.path.join(folder, f"lib{name}.so") for name in PLUGIN_PRODUCTS]
        return prebuilt, [p for p in plugins if os.path.isfile(p)]
    root = _project_root()
    scratch = os.path.join(root, SCRATCH)
    outputs: List[str] = []
    for product in ["kofka"] + _plugin_products(root):
        cmd: List[str] = [
            _swift(), "build",
            "-c", "release",
            "--product", product,
            "-Xswiftc", "-static-stdlib",
            "--package-path", root,
            "--scratch-path", scratch,
        ]
        print("kofka build: " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=root)
        out = os.path.join(scratch, "release", f"lib{product}.so")
        if not os.path.isfile(out):
            sys.exit(f"kofka build: swift build succeeded but {out} is missing")
        outputs.append(out)
    return outputs[0], outputs[1:]


class build_kofka_library(Command):
    """Build libkofka.so with SwiftPM and copy it into the built package."""

    description = "build the self-contained libkofka.so and its plugins and put them in the package"
    user_options: List = []

    def initialize_options(self) -> None:
        self.build_lib: Optional[str] = None
        self.outputs: List[str] = []

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def run(self) -> None:
        library, plugins = build_library()
        dest_dir = os.path.join(self.build_lib, "kofka")
        os.makedirs(dest_dir, exist_ok=True)
        self.outputs = []
        for src in [library] + plugins:
            dest = os.path.join(dest_dir, LIBRARY_NAME if src == library else os.path.basename(src))
            self.copy_file(src, dest)
            self.outputs.append(dest)

    def get_outputs(self) -> List[str]:
        return self.outputs or [os.path.join(self.build_lib or "", "kofka", LIBRARY_NAME)]


class build_py_with_library(build_py):
    """build_py, then the library build (the wheel and `pip install` both run build_py)."""

    def run(self) -> None:
        super().run()
        self.run_command("build_kofka_library")

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        outputs = list(super().get_outputs(include_bytecode))
        for lib in self.get_finalized_command("build_kofka_library").get_outputs():
            if lib not in outputs:
                outputs.append(lib)
        return outputs


class BinaryDistribution(Distribution):
    """The package carries a native library: never a pure (py3-none-any) wheel."""

    def has_ext_modules(self) -> bool:
        return True


cmdclass = {"build_py": build_py_with_library, "build_kofka_library": build_kofka_library}

if bdist_wheel is not None:

    class bdist_wheel_platform(bdist_wheel):  # type: ignore[misc,valid-type]
        """Platform wheel, but not tied to one Python version: the library is
        loaded with ctypes, so any CPython 3 on this platform can use it
        (tag ``py3-none-<platform>``)."""

        def finalize_options(self) -> None:
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):  # type: ignore[no-untyped-def]
            _python, _abi, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = bdist_wheel_platform

setup(distclass=BinaryDistribution, cmdclass=cmdclass)
