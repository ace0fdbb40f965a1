"""int8-dynamic product forms in onnxruntime, accuracy and speed side by side.

    python benchmarks/bench_int8_dynamic.py [--steps 64]            # export and measure here
    python benchmarks/bench_int8_dynamic.py export DIR               # on a machine with torch
    python benchmarks/bench_int8_dynamic.py run DIR [--steps 64]     # anywhere: numpy, onnx, onnxruntime only
    python benchmarks/bench_int8_dynamic.py products                 # one MatMulInteger node per form

`run` needs no torch, so it runs under qemu as another CPU (../shared/notes/cross-arch.md), e.g.
    qemu-x86_64 -cpu Haswell-noTSX,-pcid,-x2apic,-tsc-deadline,-invpcid .venv/bin/python \\
        benchmarks/bench_int8_dynamic.py run DIR
(emulated times are not CPU times: compare only the accuracy columns there).

Forms (activations uint8 x_q + 128 with zero point 128 in all three):
  u8u8       weights uint8 W_q + 128, zero point 128: what the exporter writes
  u8s8       weights int8 W_q: the form before it (pairs of products saturate to int16 on x86 without VNNI)
  u8s8-7bit  weights int8 in [-63, 63] (onnxruntime's own quantizer's reduce_range): exact, one bit less precise
Models: QL-LSTM H = 256 (2 layers, tokens) and an xLSTM LM (E = 128, [mLSTM, sLSTM]), step files, int8-dynamic; the
u8s8 files are the exports with each MatMulInteger rewired to read the stored int8 weight. For each form and path
(function bodies: native off; native library: on) `run` prints
  exact-fp32   onnx.reference's exact integer maths of the file against the PyTorch fp32 model (the mode's own error)
  vs exact     onnxruntime's outputs against that exact maths (~0 where every product sums exactly; a few 1e-4
               where onnxruntime's float kernels, e.g. tanh, round one quantized activation the other way)
  step us      a StreamingSession.step, median of 5 (one thread)
`products` times one MatMulInteger [M, K] x [K, N] per form (and int8 x int8) and checks the worst case exactly.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

MODELS = ("qllstm-h256", "xlstm-lm-e128")
FORMS = {"u8u8": "{}.onnx", "u8s8": "{}.u8s8.onnx", "u8s8-7bit": "{}.7bit.onnx"}
BATCH = 2


@contextlib.contextmanager
def seven_bit_weights():
    """Exports inside quantize int8 weights to [-63, 63] (scale max|w| / 63), as onnxruntime's reduce_range."""
    from qlstm_edge.exporters import quantize

    eight = quantize.quantize_symmetric

    def seven(name, w, bits, channel_axis, block_size=None):
        if bits != 8:
            return eight(name, w, bits, channel_axis, block_size)
        w = np.asarray(w, np.float64)
        amax = np.abs(w).max(axis=1 - channel_axis, keepdims=True)
        scale = np.where(amax > 0, amax / 63, 1.0)
        return np.clip(np.rint(w / scale), -63, 63).astype(np.int8), scale.reshape(-1).astype(np.float32)

    quantize.quantize_symmetric = seven
    try:
        yield
    finally:
        quantize.quantize_symmetric = eight


def export(out: Path, steps: int) -> None:
    import torch

    from qlstm_edge import QLLSTMConfig, QLLSTMModel
    from qlstm_edge.exporters import export_onnx

    torch.manual_seed(0)
    models = {"qllstm-h256": QLLSTMModel(QLLSTMConfig(hidden_size=256, num_layers=2, vocab_size=1000,
                                                      output_size=8)).eval()}
    try:
        import sys
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_xlstm import lm
        models["xlstm-lm-e128"] = lm(128, 4, 2, [1], vocab=1000)
    except ImportError as e:
        print(f"xLSTM LM skipped: {e}")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, model in models.items():
        ids = rng.integers(0, 1000, (steps, BATCH))
        path = export_onnx(model, out / FORMS["u8u8"].format(name), mode="step", quantize="int8-dynamic")
        onnx.save(old_form(onnx.load(str(path))), str(out / FORMS["u8s8"].format(name)))
        with seven_bit_weights():
            seven = export_onnx(model, out / FORMS["u8s8-7bit"].format(name), mode="step", quantize="int8-dynamic")
        onnx.save(old_form(onnx.load(str(seven))), str(seven))
        with torch.no_grad():
            y = model(torch.from_numpy(ids.T.copy()))
        y = (y[0] if isinstance(y, tuple) else y).float().numpy().transpose(1, 0, 2)  # [T, B, out]
        np.savez(out / f"{name}.npz", ids=ids, fp32=y)


def old_form(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every uint8 x uint8 MatMulInteger rewired to read the int8 weight its unsigned copy is made from."""
    for g in [model.graph, *model.functions]:
        made_by = {out: n for n in g.node for out in n.output}
        for n in g.node:
            if n.op_type == "MatMulInteger" and len(n.input) == 4:
                to_u8 = made_by[n.input[1]]  # Cast(Add(Cast(W_q, int32), 128), uint8)
                n.input[1] = made_by[made_by[to_u8.input[0]].input[0]].input[0]
                del n.input[3]
    return model


def median_us(calls, rounds: int = 7, n: int = 50) -> list:
    """Median microseconds per call of each of ``calls``, timed in interleaved rounds (drift hits all alike)."""
    times = [[] for _ in calls]
    for _ in range(rounds):
        for fn, t in zip(calls, times):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            t.append((time.perf_counter() - t0) / n * 1e6)
    return [float(np.median(t)) for t in times]


def exact(path: Path, ids: np.ndarray) -> np.ndarray:
    """onnx.reference, stepping the file with the states its metadata lists."""
    from qlstm_edge.runtime import StreamingSession

    s = StreamingSession(path, native="off")
    meta = s.metadata
    s.reset(batch_size=ids.shape[1])
    state = s.get_state()
    ref = ReferenceEvaluator(str(path))
    ys = []
    for t in range(len(ids)):
        feeds = {meta.inputs[0].name: ids[t], **{st.input: state[st.name] for st in meta.states}}
        outs = dict(zip(ref.output_names, ref.run(None, feeds)))
        ys.append(outs[meta.outputs[0].name])
        state = {st.name: outs[st.output] for st in meta.states}
    return np.stack(ys)


def run(d: Path, steps: int) -> list:
    from qlstm_edge.runtime import StreamingSession, native_status

    natives = ["off"] + (["on"] if native_status()["available"] else [])
    rows = []
    for name in MODELS:
        if not (d / f"{name}.npz").exists():
            continue
        data = np.load(d / f"{name}.npz")
        ids, fp32 = data["ids"][:steps], data["fp32"][:steps]
        results = []
        for form, pattern in FORMS.items():
            path = d / pattern.format(name)
            ex = exact(path, ids)
            for native in natives:
                session = StreamingSession(path, native=native, threads=1)
                ys = np.stack([session.step(ids[t]) for t in range(len(ids))])
                results.append((form, session, float(np.abs(ex - fp32).max()), float(np.abs(ys - ex).max())))
        steps_us = median_us([lambda s=session: s.step(ids[0]) for _, session, _, _ in results])
        for (form, session, exact_err, err), us in zip(results, steps_us):
            rows.append({"model": name, "form": form, "path": session.op_path, "exact_vs_fp32": exact_err,
                         "vs_exact": err, "step_us": us})
            print(f"{name:14s} {form:9s} {session.op_path:13s} exact-fp32 {exact_err:.2e}  vs exact {err:.2e}  "
                  f"step {us:7.1f} us", flush=True)
    return rows


def products() -> None:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def session(a_type, w, w_zero):
        k, n = w.shape
        inits = [numpy_helper.from_array(w, "w")]
        zeros = [] if a_type == TensorProto.INT8 else ["za"]
        inits += [numpy_helper.from_array(np.array(128, np.uint8), "za")] if zeros else []
        if w_zero is not None:
            inits.append(numpy_helper.from_array(np.array(w_zero, np.uint8), "zb"))
            zeros.append("zb")
        g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w", *zeros], ["y"])], "p",
                              [helper.make_tensor_value_info("a", a_type, ["M", k])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, ["M", n])], inits)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    rng = np.random.default_rng(0)
    u8 = lambda q: (q.astype(np.int32) + 128).astype(np.uint8)  # noqa: E731
    for k, n in ((256, 1024), (512, 2048), (1024, 1024)):
        wq = rng.integers(-127, 128, (k, n)).astype(np.int8)
        w7 = np.clip(np.rint(wq / 2), -63, 63).astype(np.int8)
        forms = {"u8u8": (TensorProto.UINT8, u8(wq), 128, u8, wq), "u8s8": (TensorProto.UINT8, wq, None, u8, wq),
                 "u8s8-7bit": (TensorProto.UINT8, w7, None, u8, w7),
                 "s8s8": (TensorProto.INT8, wq, None, lambda q: q.astype(np.int8), wq)}
        for m in (1, 16):
            worst = np.full((m, k), 127)  # every pair of products 255 x 127 in the uint8 x int8 form
            x = rng.integers(-127, 128, (m, k))
            calls, wrong = [], []
            for a_type, w, w_zero, encode, w_exact in forms.values():
                s = session(a_type, w, w_zero)
                wrong.append(int(np.abs(s.run(None, {"a": encode(worst)})[0] - worst @ w_exact.astype(np.int64)).max()))
                calls.append(lambda s=s, a=encode(x): s.run(None, {"a": a}))
            cols = [f"{form} {us:7.1f} us{' WRONG by %d' % bad if bad else ''}"
                    for form, us, bad in zip(forms, median_us(calls, n=100), wrong)]
            print(f"K={k:4d} N={n:4d} M={m:2d}: " + " | ".join(cols), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=["export", "run", "products"],
                   help="default: export and run, in a temporary folder")
    p.add_argument("dir", nargs="?", type=Path)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--json", type=Path, help="write the rows as JSON")
    a = p.parse_args()
    if a.command == "products":
        products()
        return
    if a.command and a.dir is None:
        p.error(f"{a.command} needs DIR")
    if a.command == "export":
        export(a.dir, a.steps)
        return
    if a.command == "run":
        rows = run(a.dir, a.steps)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            export(Path(tmp), a.steps)
            rows = run(Path(tmp), a.steps)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
