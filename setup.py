"""Hooks the native op library build into setuptools; all metadata lives in pyproject.toml.

``build_py`` runs ``runtime/native/build.py`` first, so ``pip install .``, ``pip install -e .``
and ``pip wheel .`` all build ``runtime/libqlstm_edge_ops.so`` (package data of
``qlstm_edge.runtime``). Environment: QLSTM_EDGE_SKIP_NATIVE=1, QLSTM_EDGE_REQUIRE_NATIVE=1,
QLSTM_EDGE_BUILD_CUDA=1, ORT_INCLUDE_DIR (see runtime/native/build.py).
"""

import importlib.util
import os
from pathlib import Path

from setuptools import Distribution, setup
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


class NativeDistribution(Distribution):
    """Wheels carry a compiled library, so they are platform wheels unless the build is skipped."""

    def has_ext_modules(self):
        return os.environ.get("QLSTM_EDGE_SKIP_NATIVE", "").strip().lower() not in {"1", "true", "yes", "on"}


setup(cmdclass={"build_py": BuildPyWithNative}, distclass=NativeDistribution)
