"""The device install (``pip install qlstm-edge``, no extras) has no PyTorch: its dependencies are the runtime's and the
CLI's, the CLI's device commands (``stream``, ``info FILE.onnx``, ``--help``) run with torch and safetensors (the
``export`` extra's modules) missing, natively when the library is built, and the commands that run PyTorch models
say which extra to install instead of failing with a traceback."""
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from qlstm_edge.runtime import StreamingSession, native_status

from helpers import REPO as ROOT, make_qllstm
EXTRA_HINT = "pip install 'qlstm-edge[export]'"

# A missing package, as Python reports it: ModuleNotFoundError with the module's name.
BLOCK_EXPORT_EXTRA = textwrap.dedent("""
    import sys

    class BlockExportExtra:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "safetensors"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked in this process)", name=name)
            return None

    sys.meta_path.insert(0, BlockExportExtra())
""")


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """A folder whose sitecustomize.py blocks the export extra's modules in every process started with it on
    PYTHONPATH."""
    d = tmp_path_factory.mktemp("no-export-extra")
    (d / "sitecustomize.py").write_text(BLOCK_EXPORT_EXTRA)
    return d


def cli(blocked, *args):
    """Run the ``qlstm-edge`` entry point (``qlstm_edge.cli:main``) in a process without the export extra."""
    env = {**os.environ, "PYTHONPATH": str(blocked)}  # the same native library and ISA as this process
    return subprocess.run([sys.executable, "-c", "from qlstm_edge.cli import main; main()", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=300)


def test_export_extra_is_really_blocked(blocked):
    for module in ("torch", "safetensors"):
        done = subprocess.run([sys.executable, "-c", f"import {module}"],
                              env={**os.environ, "PYTHONPATH": str(blocked)}, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode != 0 and "blocked in this process" in done.stderr


def test_device_commands_run_without_torch(tmp_path, blocked, exported):
    _, paths = exported
    model = paths["sequence"]
    r = cli(blocked, "--help")
    assert r.returncode == 0, r.stderr
    assert all(c in r.stdout for c in ("stream", "info", "export", "parity", "train")) and EXTRA_HINT in r.stdout

    r = cli(blocked, "info", model, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["kind"], doc["mode"], doc["custom_ops"], doc["warnings"]) == ("onnx", "sequence", ["QLLSTMSequence"], [])
    assert doc["native"]["available"] == native_status()["available"]
    r = cli(blocked, "info", model)
    assert r.returncode == 0, r.stderr
    assert "family qllstm" in r.stdout and "hidden_size    16" in r.stdout and "mode sequence" in r.stdout

    want = StreamingSession(model, native="auto")
    if os.environ.get("QLSTM_EDGE_REQUIRE_NATIVE") == "1" or native_status()["available"]:
        assert want.op_path == "native", native_status()["reason"]
    x = np.random.default_rng(0).integers(0, 40, size=(2, 30), dtype=np.int64)
    np.save(tmp_path / "x.npy", x)
    r = cli(blocked, "stream", model, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--chunk", 7)
    assert r.returncode == 0, r.stderr
    assert f"({want.op_path} on CPUExecutionProvider)" in r.stdout
    want.reset(batch_size=2)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want.run(x))


def test_pytorch_commands_name_the_extra(tmp_path, blocked, exported):
    from qlstm_edge import save_checkpoint

    ckpt = save_checkpoint(make_qllstm(), tmp_path / "model.safetensors")
    out = tmp_path / "out.onnx"
    commands = {
        "export": ["export", ckpt, "-o", out],
        "parity": ["parity", ckpt, exported[1]["step"], "--steps", 5],
        "quantize-report": ["quantize-report", ckpt],
        "train": ["train", "qllstm", "-o", tmp_path / "trained.safetensors"],
        "info on a checkpoint": ["info", ckpt],
    }
    for what, args in commands.items():
        r = cli(blocked, *args)
        assert r.returncode == 1 and r.stdout == "", (what, r.stdout, r.stderr)
        assert r.stderr.strip() == (f"Error: qlstm-edge {what} needs the export extra (No module named 'torch' "
                                    f"(blocked in this process)): {EXTRA_HINT}"), (what, r.stderr)
    assert not out.exists() and not (tmp_path / "trained.safetensors").exists()
    r = cli(blocked, "train", "--help")
    assert r.returncode == 0 and "Families and data sets need the export extra" in r.stdout and EXTRA_HINT in r.stdout


def _requirement_name(spec: str) -> str:
    return re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower()


def test_base_dependencies_have_no_pytorch():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {_requirement_name(d) for d in project["dependencies"]}
    assert base == {"numpy", "onnxruntime", "onnx", "click"}
    export = {_requirement_name(d): d for d in project["optional-dependencies"]["export"]}
    assert export["torch"] == "torch==2.13.0" and "safetensors" in export
    assert "qlstm-edge[export]" in project["optional-dependencies"]["dev"]


def _closure(requirements) -> set:
    """The installed distributions that ``requirements`` (PEP 508 strings) pull in, their own dependencies
    included (markers evaluated here; extras not taken)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    found, todo = {}, list(requirements)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        dist = metadata.distribution(req.name)
        key = dist.metadata["Name"].lower()
        if key not in found:
            found[key] = dist
            todo.extend(dist.requires or ())
    return set(found.values())


def test_base_dependencies_are_enough(tmp_path, exported):
    """A process that sees only the base dependencies (and what they require), as a plain ``pip install`` of the
    package gives, streams natively through the CLI; ``export`` names the extra."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    base = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    site = tmp_path / "site"
    package = site / "qlstm_edge"
    package.mkdir(parents=True)
    for dist in _closure(base):
        for top in {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")}:
            if not (site / top).exists():
                (site / top).symlink_to(dist.locate_file(top))
    for entry in (ROOT / "qlstm_edge").iterdir():  # the installed layout: exporters/ and runtime/ inside the package
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name in ("exporters", "runtime"):
        (package / name).symlink_to(ROOT / name)
    entry = f"import sys; sys.path.insert(0, {str(site)!r}); from qlstm_edge.cli import main; main()"

    def cli_isolated(*args):  # -I -S: no site-packages, no PYTHON* variables, no user site
        return subprocess.run([sys.executable, "-I", "-S", "-c", entry, *map(str, args)], capture_output=True,
                              text=True, timeout=300)

    model = exported[1]["sequence"]
    want = StreamingSession(model, native="auto")
    x = np.random.default_rng(1).integers(0, 40, size=(1, 12), dtype=np.int64)
    np.save(tmp_path / "x.npy", x)
    r = cli_isolated("stream", model, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    assert f"({want.op_path} on CPUExecutionProvider)" in r.stdout
    want.reset(batch_size=1)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want.run(x))
    r = cli_isolated("info", model)
    assert r.returncode == 0 and "mode sequence" in r.stdout, r.stderr
    r = cli_isolated("export", model, "-o", tmp_path / "out.onnx")
    assert r.returncode == 1 and r.stderr.strip() == ("Error: qlstm-edge export needs the export extra (No module "
                                                      f"named 'torch'): {EXTRA_HINT}"), r.stderr
