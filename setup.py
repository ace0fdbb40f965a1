"""Hooks the native op library build and package discovery into setuptools; all metadata lives in pyproject.toml.

``build_py`` runs ``runtime/native/build.py`` first, so ``pip install .``, ``pip install -e .``
and ``pip wheel .`` all build ``runtime/libqlstm_edge_ops.so`` (package data of
``qlstm_edge.runtime``). Environment: QLSTM_EDGE_SKIP_NATIVE=1, QLSTM_EDGE_REQUIRE_NATIVE=1,
QLSTM_EDGE_BUILD_CUDA=1, ORT_INCLUDE_DIR (see runtime/native/build.py).

The packages are every package found under the folders of pyproject's ``package-dir`` (``exporters/`` and
``runtime/`` are installed as ``qlstm_edge.exporters`` and ``qlstm_edge.runtime``), so a new family folder
needs no edit here or there.
"""

import importlib.util
import os
from pathlib import Path

from setuptools import Distribution, find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _native_build_module():
    spec = importlib.util.spec_from_file_location("_qlstm_edge_native_build", ROOT / "runtime" / "native" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithNative(build_py):
    def run(self):
        _native_build_module().build_native()
        super().run()


def packages_under(package_dir: dict) -> list:
    """Every package (a folder with ``__init__.py``) under the folders of ``package_dir``, named in its namespace."""
    found = []
    for package, folder in package_dir.items():
        found += [package, *(f"{package}.{sub}" for sub in find_packages(str(ROOT / folder)))]
    return found


class ProjectDistribution(Distribution):
    """Packages are found under pyproject's package-dir folders. Wheels carry a compiled library, so they are
    platform wheels unless the build is skipped."""

    def parse_config_files(self, *args, **kwargs):
        super().parse_config_files(*args, **kwargs)
        # replaces setuptools' own discovery, which would take runtime/native (no __init__.py) for a package
        self.packages = packages_under(self.package_dir)

    def has_ext_modules(self):
        return os.environ.get("QLSTM_EDGE_SKIP_NATIVE", "").strip().lower() not in {"1", "true", "yes", "on"}


setup(cmdclass={"build_py": BuildPyWithNative}, distclass=ProjectDistribution)
