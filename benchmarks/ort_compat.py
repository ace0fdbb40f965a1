"""Check that exported files load and give the same numbers in an older onnxruntime.

    python benchmarks/ort_compat.py 1.15.0 [1.16.3 ...] [--quantize none fp16 int8 int8-dynamic int4]

For each version, a throwaway venv (under $TMPDIR) gets only `onnxruntime==VERSION` and numpy<2; the
bundled quickstart model is exported in both modes and each --quantize mode here, streamed here (current
onnxruntime, function bodies), then streamed in the old runtime with plain InferenceSession.run calls (no
qlstm-edge code there: stock onnxruntime, function bodies inlined; the one session option StreamingSession sets is set there too).
Prints the max abs difference per file.
int4 files (opset 21) are only tried in onnxruntime >= 1.19 (INT4_MIN_ONNXRUNTIME).
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import venv
from pathlib import Path

import numpy as np

from qlstm_edge import load_checkpoint
from qlstm_edge.exporters import export_onnx
from qlstm_edge.exporters.quantize import INT4_MIN_ONNXRUNTIME
from qlstm_edge.runtime import StreamingSession

ROOT = Path(__file__).resolve().parents[1]

OLD_RUNNER = r"""
import sys, numpy as np, onnxruntime as ort
path, x_path, out_path, mode = sys.argv[1:5]
x = np.load(x_path)
so = ort.SessionOptions()
so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")  # as StreamingSession (int4 files)
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
names = [i.name for i in s.get_inputs()[1:]]
state = {n: np.zeros((x.shape[0],) + tuple(i.shape[1:]), np.float32) for n, i in zip(names, s.get_inputs()[1:])}
if mode == "sequence":
    y = s.run(None, {"x": x, **state})[0]
else:
    ys = []
    for t in range(x.shape[1]):
        out = s.run(None, {"x": x[:, t], **state})
        ys.append(out[0])
        state = dict(zip(names, out[1:]))
    y = np.stack(ys, 1)
np.save(out_path, y)
print(ort.__version__)
"""


def _version(v: str) -> tuple:
    return tuple(int(p) for p in v.split(".")[:3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("versions", nargs="*", default=["1.15.0"])
    ap.add_argument("--quantize", nargs="+", default=["none"], help="export modes to check ('none' = fp32)")
    args = ap.parse_args()
    model = load_checkpoint(ROOT / "samples" / "quickstart" / "model.safetensors")
    x = np.random.default_rng(0).integers(0, model.config.vocab_size, (2, 64))
    failed = False
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        np.save(d / "x.npy", x)
        (d / "runner.py").write_text(OLD_RUNNER)
        files = {(q, m): export_onnx(model, d / f"{q}-{m}.onnx", mode=m, quantize=None if q == "none" else q)
                 for q in args.quantize for m in ("step", "sequence")}
        ours = {k: StreamingSession(p, native="off").run(x) for k, p in files.items()}
        for version in args.versions:
            env = d / f"ort-{version}"
            venv.create(env, with_pip=True)
            py = env / "bin" / "python"
            subprocess.run([py, "-m", "pip", "install", "-q", f"onnxruntime=={version}", "numpy<2"], check=True)
            for (q, mode), path in files.items():
                what = f"onnxruntime {version} {q:12s} {mode:8s}"
                if q == "int4" and _version(version) < _version(INT4_MIN_ONNXRUNTIME):
                    print(f"{what}: skipped (int4 files need onnxruntime >= {INT4_MIN_ONNXRUNTIME})")
                    continue
                out = d / f"y-{version}-{q}-{mode}.npy"
                got = subprocess.run([py, d / "runner.py", path, d / "x.npy", out, mode], capture_output=True,
                                     text=True)
                if got.returncode != 0:
                    failed = True
                    print(f"{what}: FAILED\n{got.stderr.strip()[-2000:]}")
                    continue
                err = float(np.abs(np.load(out) - ours[q, mode]).max())
                failed |= err > 1e-5
                print(f"{what}: loads and streams; max abs diff {err:.2e}")
    return 1 if failed else 0

if __name__ == "__main__":
    raise SystemExit(main())
