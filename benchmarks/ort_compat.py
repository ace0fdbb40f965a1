"""Check that exported files load and give the same numbers in an older onnxruntime.

    python benchmarks/ort_compat.py 1.15.0 [1.16.3 ...] [--quantize none fp16 int8 int8-dynamic int4]
                                    [--models quickstart formal-language xlstm xlstm-large]

For each version, a throwaway venv (under $TMPDIR) gets only `onnxruntime==VERSION` and numpy<2. Each model
(the bundled QL-LSTM quickstart and PR-LSTM formal-language samples, and benchmarks/bench_xlstm.py's random
xLSTM LM with an mLSTM and an sLSTM block and xLSTMLarge, E = 64) is exported in both modes and each --quantize
mode here, streamed here (current onnxruntime, function bodies), then streamed in the old runtime with plain
InferenceSession.run calls: no qlstm-edge code there, stock onnxruntime with the function bodies inlined, the
states' shapes, types and initial values read from the file's metadata, and the one session option
StreamingSession sets set there too.
Prints the max abs difference per file.
int4 files (opset 18: BitwiseAnd) are only tried in onnxruntime >= INT4_MIN_ONNXRUNTIME.
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
import json, sys, numpy as np, onnxruntime as ort
path, x_path, out_path = sys.argv[1:4]
x = np.load(x_path)
so = ort.SessionOptions()
so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")  # as StreamingSession (int4 files)
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
meta = json.loads(s.get_modelmeta().custom_metadata_map["qlstm_edge"])
states = meta["states"]
state = {st["input"]: np.full([x.shape[0] if d == "batch" else d for d in st["shape"]], st["init"], st["dtype"])
         for st in states}
outs = [meta["outputs"][0]["name"]] + [st["output"] for st in states]
chunks = [x] if meta["mode"] == "sequence" else [x[:, t] for t in range(x.shape[1])]
ys = []
for chunk in chunks:
    out = s.run(outs, {meta["inputs"][0]["name"]: chunk, **state})
    ys.append(out[0])
    state = {st["input"]: o for st, o in zip(states, out[1:])}
y = ys[0] if meta["mode"] == "sequence" else np.stack(ys, 1)
np.save(out_path, y)
print(ort.__version__)
"""


def xlstm_lm():
    import torch
    from bench_xlstm import lm

    torch.manual_seed(0)
    return lm(64, 4, 2, [1], vocab=50)


def xlstm_large():
    import torch
    from bench_xlstm import large

    torch.manual_seed(0)
    return large(64, 2, 2, vocab=50)


MODELS = {"quickstart": lambda: load_checkpoint(ROOT / "samples" / "quickstart" / "model.safetensors"),
          "formal-language": lambda: load_checkpoint(ROOT / "samples" / "formal_language" / "model.safetensors"),
          "xlstm": xlstm_lm, "xlstm-large": xlstm_large}


def _version(v: str) -> tuple:
    return tuple(int(p) for p in v.split(".")[:3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("versions", nargs="*", default=["1.15.0"])
    ap.add_argument("--quantize", nargs="+", default=["none"], help="export modes to check ('none' = fp32)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = ap.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "runner.py").write_text(OLD_RUNNER)
        files, ours = {}, {}
        for name in args.models:
            model, x = MODELS[name](), None
            for q in args.quantize:
                for m in ("step", "sequence"):
                    path = export_onnx(model, d / f"{name}-{q}-{m}.onnx", mode=m, quantize=None if q == "none" else q)
                    s = StreamingSession(path, native="off")
                    if x is None:  # every model here reads token ids
                        x = np.random.default_rng(0).integers(*s.metadata.inputs[0].range, (2, 64))
                        np.save(d / f"{name}-x.npy", x)
                    files[name, q, m] = path
                    ours[name, q, m] = s.run(x)
        for version in args.versions:
            env = d / f"ort-{version}"
            venv.create(env, with_pip=True)
            py = env / "bin" / "python"
            subprocess.run([py, "-m", "pip", "install", "-q", f"onnxruntime=={version}", "numpy<2"], check=True)
            for (name, q, mode), path in files.items():
                what = f"onnxruntime {version} {name:15s} {q:12s} {mode:8s}"
                if q == "int4" and _version(version) < _version(INT4_MIN_ONNXRUNTIME):
                    print(f"{what}: skipped (int4 files need onnxruntime >= {INT4_MIN_ONNXRUNTIME})")
                    continue
                out = d / f"y-{version}-{name}-{q}-{mode}.npy"
                got = subprocess.run([py, d / "runner.py", path, d / f"{name}-x.npy", out], capture_output=True,
                                     text=True)
                if got.returncode != 0:
                    failed = True
                    print(f"{what}: FAILED\n{got.stderr.strip()[-2000:]}")
                    continue
                err = float(np.abs(np.load(out) - ours[name, q, mode]).max())
                failed |= err > 1e-5
                print(f"{what}: loads and streams; max abs diff {err:.2e}")
    return 1 if failed else 0

if __name__ == "__main__":
    raise SystemExit(main())
