"""Fuzz of the native op library's input checks (issue 17): one-node graphs of every native op with random
shapes, element types and attributes (quant_mode; block_size near 2^31, 2^32 and 2^63 - 1, 0, negative; the ops'
float attributes missing, mistyped, zero, negative, huge or NaN; their string attributes mistyped or with unknown
values), sizes near the integer limits and zero-size
dimensions. Cases run in batches, each batch in a subprocess (this file run as a script), so a crash fails the test
instead of killing the suite: every case must end in a clean onnxruntime error or a correct run (a contract-valid
case must run, give the contract's output shapes and finite values, and an int4 block_size beyond every K must give
the numbers of one block per matrix), never a signal. A fixed seed: the same cases every run. Also the issue's
reproducers as regular tests: int4 block_size = 2^63 - 1 with empty scales (which wrapped the scale-row check to 0
and read the scales out of bounds) and the empty sLSTM R [4, 2^21, 0, 0] (1.65 GB per step).

The nodes come from the op table (qlstm_edge.ops.all_ops(): inputs, outputs, element types, symbolic shapes,
matrices and their scales, host scalars, float and string attributes); the only thing written here per op family
is its size relations (``SIZES``). test_fuzz_covers_every_native_op fails until a new native op's family is there."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from qlstm_edge.ops import all_ops, scale_input

DOMAIN = "qlstm_edge"
I64_MAX = 2 ** 63 - 1
F32, F16, F64, I8, U8, I32, I64, INT4 = "float32", "float16", "float64", "int8", "uint8", "int32", "int64", "int4"
DTYPES = [F32, F16, F64, I8, U8, I32, I64, INT4]
MODES = [None, "fp16", "int8", "int8-dynamic", "int4"]
INTEGER = ("int8", "int8-dynamic", "int4")
BLOCKS_VALID = [1, 2, 3, 7, 16, 32, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 62, I64_MAX]
BLOCKS_BAD = [0, -1, -(2 ** 31), -(2 ** 63)]
EXTREMES = [0, 1, 2 ** 16 + 1, 2 ** 21, 2 ** 24 + 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 40, 2 ** 62,
            I64_MAX]
BATCHES, CHUNKS = [0, 1, 1, 2, 3], [0, 1, 2, 5]  # a valid node's B and (sequence) T
FLOAT_ATTRIBUTE = 1e-5  # a valid node's value of each of its op's float attributes (so far all norm epsilons)
MAX_ELEMENTS = 4096  # real data per tensor; a larger shape gets a zero-size axis (an empty tensor)
BIG_DIM = 2 ** 24    # a tensor with a larger dimension is an initializer (numpy cannot hold every such shape)
CASE_SECONDS = 2.0   # a case taking longer, or a worker above MAX_RSS_MB, is a degenerate shape that costs a lot
MAX_RSS_MB = 512


# -- the ops' contract: the op table (qlstm_edge/families/<family>/ops.py) and each family's size relations -------
@dataclass(frozen=True)
class Sizes:
    """An op family's size relations: the range each free size of a valid node is drawn from (small: every tensor
    holds real data), and the sizes its ports' shapes name that follow from the free ones."""

    draw: dict
    derived: Callable[[dict], dict] = lambda d: {}


def _qkv_heads(i: int) -> dict:
    bs = next(b for b in (4, 3, 2, 1) if i % b == 0)
    return {"I": i, "BS": bs, "NP": i // bs}


# Where a new op goes: the sizes its spec's shapes name, keyed by its family (``family``: the op's name less Cell,
# Step or Sequence), beyond B (every op's batch) and T (a sequence op's chunk length). Nothing else is per op.
SIZES = {
    "QLLSTM": Sizes({"D": range(1, 10), "H": range(1, 10)}),
    # K >= 4: count (< 4) + T (<= 5) < 2^K, no position past the stream limit (NaN outputs)
    "PRLSTM": Sizes({"D": range(1, 8), "H": range(1, 8), "K": range(4, 7), "R": range(0, 3)}),
    "sLSTM": Sizes({"NH": range(1, 4), "DH": range(1, 7)}, lambda d: {"H": d["NH"] * d["DH"]}),
    "mLSTM": Sizes({"NH": range(1, 4), "DK": range(1, 7), "DV": range(1, 7)}),
    "xLSTMLargeBlock": Sizes({"E": range(1, 9), "NH": range(1, 4), "DK": range(1, 5), "DV": range(1, 5),
                              "U": range(1, 9)}, lambda d: {"QK": d["NH"] * d["DK"], "V": d["NH"] * d["DV"]}),
    # the LM's mLSTM block: I = NH DH cut into NP q/k/v heads of BS (the largest of 4, 3, 2, 1 that divides I)
    "mLSTMBlock": Sizes({"E": range(1, 9), "KS": range(1, 5), "NH": range(1, 4), "DH": range(1, 5)},
                        lambda d: _qkv_heads(d["NH"] * d["DH"])),
    "sLSTMBlock": Sizes({"NH": range(1, 4), "DH": range(1, 5), "KS": range(1, 5), "U": range(1, 9)},
                        lambda d: {"E": d["NH"] * d["DH"]}),
}
SPECS = all_ops()
HOST_SCALARS = {p.name for s in SPECS.values() for p in s.inputs if p.name in s.host and p.shape == "[]"}


def family(op: str) -> str:
    return re.sub("(Cell|Step|Sequence)$", "", op)


def symbols(op: str) -> set:
    """The sizes the shapes of ``op``'s ports name."""
    spec = SPECS[op]
    return {s for p in spec.inputs + spec.outputs for s in re.findall(r"[A-Za-z]\w*", p.shape)}


def is_sequence(op: str) -> bool:
    return "T" in symbols(op)


def modes(op: str) -> list:
    """The quantization modes of ``op``'s nodes: all with matrices, float32 only without."""
    return MODES if SPECS[op].matrices else [None]


def dims(shape: str, d: dict) -> list:
    """A port's symbolic shape ("[B, T, 2QK + 2V]") with the sizes ``d``: each dimension an arithmetic expression of
    the sizes, a number before a size multiplying it."""
    return [int(v) for v in eval(re.sub(r"(\d)\s*([A-Za-z])", r"\1*\2", shape), {"__builtins__": {}}, d)]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def weight_inputs(op: str) -> set:
    """``op``'s matrices and their scales: the inputs a case holds constant or feeds as a whole."""
    spec = SPECS[op]
    return {*spec.matrices, *spec.scale_inputs}


def contract(op: str, d: dict, mode, bs: int, packed: bool = True):
    """(inputs [(name, dtype, shape)], outputs [(name, dtype, shape)]) of a valid ``op`` node with sizes ``d`` (its
    family's free sizes, B, and T for a sequence op), in ``mode`` (int4: ``block_size`` bs, ``packed`` two per
    byte in uint8, else ONNX int4)."""
    spec = SPECS[op]
    d = {**d, **SIZES[family(op)].derived(d)}
    wt = {None: F32, "fp16": F16, "int8": I8, "int8-dynamic": I8, "int4": U8 if packed else INT4}[mode]
    shapes = {p.name: dims(p.shape, d) for p in spec.inputs}
    ins = []
    for i, p in enumerate(spec.inputs):
        s = shapes[p.name]
        if p.name in spec.matrices:
            ins.append((p.name, wt, s[:-1] + [ceil_div(s[-1], 2) if wt == U8 else s[-1]]))
        else:
            ins.append((p.name, F16 if i == 0 and spec.x_in_product and mode == "fp16" else p.dtype, s))
    if mode in INTEGER:
        for m in spec.matrices:
            *lead, K, N = shapes[m]
            ins.append((scale_input(m), F32, lead + ([ceil_div(K, bs)] if mode == "int4" else []) + [N]))
    return ins, [(p.name, p.dtype, dims(p.shape, d)) for p in spec.outputs]


def attributes(op: str, mode, bs: int) -> dict:
    quant = {"quant_mode": mode, "block_size": bs if mode == "int4" else 0} if mode is not None else {}
    return {**dict.fromkeys(SPECS[op].attributes, FLOAT_ATTRIBUTE), **quant}


def max_k(op: str, d: dict) -> int:
    """The largest K (input rows) of the op's matrices: a block_size at least this is one block per matrix."""
    spec = SPECS[op]
    d = {**d, **SIZES[family(op)].derived(d)}
    return max(dims(p.shape, d)[-2] for p in spec.inputs if p.name in spec.matrices)


# -- case generation -----------------------------------------------------------------------------------------------
def valid_case(rng, op: str, mode) -> dict:
    """A contract-valid ``mode`` node: small sizes, a random (int4) block size, weights constant or fed, host
    scalars of shape [] or [1]."""
    d = {"B": int(rng.choice(BATCHES))}
    if is_sequence(op):
        d["T"] = int(rng.choice(CHUNKS))
    d.update({k: int(rng.integers(r.start, r.stop)) for k, r in SIZES[family(op)].draw.items()})
    bs = int(rng.choice(BLOCKS_VALID)) if mode == "int4" else 0
    packed = mode != "int4" or bool(rng.random() < 0.8)
    ins, outs = contract(op, d, mode, bs, packed)
    const = bool(rng.random() < 0.5)
    inputs = [{"name": n, "dtype": t, "shape": [1] if n in SPECS[op].host and s == [] and rng.random() < 0.3 else s,
               "const": const and n in weight_inputs(op) or t == INT4} for n, t, s in ins]  # numpy has no int4
    attrs = {**attributes(op, mode, bs), **{a: str(rng.choice(v)) for a, v in SPECS[op].choices if rng.random() < 0.8}}
    case = {"op": op, "attrs": attrs, "inputs": inputs, "outputs": [[n, t] for n, t, _ in outs],
            "dims": d, "mode": mode, "valid": True, "expect": [s for _, _, s in outs]}
    if mode == "int4" and bs > max_k(op, d):
        case["same_as_block"] = max_k(op, d)
    return case


def fit(shape: list, rng) -> list:
    """``shape`` with int64 dimensions; one holding more than MAX_ELEMENTS gets a zero-size axis (a small one)."""
    shape = [min(int(v), I64_MAX) for v in shape]
    if int(np.prod([float(v) for v in shape])) > MAX_ELEMENTS:
        small = [i for i, v in enumerate(shape) if v <= 64] or [0]
        shape[int(rng.choice(small))] = 0
    return shape


def mutate(rng, case: dict) -> dict:
    """One crafted change of a valid case: an extreme size, a block size, an element type, a rank, a dimension, the
    input count, an input left out, the quant_mode, an attribute's type or value (or its absence), the scale rows
    an overflowing ceil(K / block) gave, or int8 values down to -128."""
    c = json.loads(json.dumps(case))
    c["valid"] = False
    c.pop("expect", None)
    c.pop("same_as_block", None)
    kind = rng.choice(["size", "size", "size", "zero_size", "block", "dtype", "rank", "dim", "count", "omit", "mode",
                       "attr", "wrapped_scale", "int8_min"])
    ins = c["inputs"]
    pick = ins[int(rng.integers(len(ins)))]
    if kind in ("size", "zero_size"):
        d = dict(c["dims"])
        d[str(rng.choice(list(d)))] = int(rng.choice(EXTREMES))
        if kind == "zero_size":  # a zero-size dimension next to a huge one: every tensor empty, the sizes free
            d[str(rng.choice(list(d)))] = 0
        bs = int(c["attrs"].get("block_size", 0))
        new, _ = contract(c["op"], d, c["mode"], bs if bs >= 1 else 1)
        for t, (_, _, s) in zip(ins, new):
            t["shape"] = fit(s, rng)
    elif kind == "block":
        c["attrs"].update(quant_mode=c["mode"] or "int4",
                          block_size=int(rng.choice(BLOCKS_VALID + BLOCKS_BAD + [2 ** 32 - 1])))
    elif kind == "dtype":
        pick["dtype"] = str(rng.choice(DTYPES))
    elif kind == "rank":
        pick["shape"] = fit(pick["shape"][:-1] if pick["shape"] and rng.random() < 0.5 else pick["shape"] + [1], rng)
    elif kind == "dim" and pick["shape"]:
        i = int(rng.integers(len(pick["shape"])))
        pick["shape"][i] = int(rng.choice([0, 1, pick["shape"][i] + 1, max(pick["shape"][i] - 1, 0), 2 ** 31,
                                           2 ** 62, I64_MAX]))
        pick["shape"] = fit(pick["shape"], rng)
    elif kind == "omit":  # an input left out, ONNX's empty name (an optional one reaches the kernel)
        pick["name"] = ""
    elif kind == "count":
        if rng.random() < 0.5:
            ins.pop()
        else:
            ins.append(dict(ins[-1], name=ins[-1]["name"] + "_extra"))
    elif kind == "mode":
        c["attrs"].update(quant_mode=str(rng.choice(["int8", "int4", "fp16", "int8-dynamic", "int2", ""])),
                          block_size=int(rng.choice([0, 32, I64_MAX])))
    elif kind == "attr":
        # an int quant_mode, a float or string block_size; a float attribute of another type, absent (None), zero,
        # negative, huge, infinite or NaN; a string attribute of another type or with a value not among its own
        wrong = [("quant_mode", 4), ("block_size", 2.5), ("block_size", "32")]
        wrong += [(a, v) for a in SPECS[c["op"]].attributes
                  for v in (1, "0.001", None, 0.0, -1.0, 3e38, float("inf"), float("nan"))]
        wrong += [(a, v) for a, _ in SPECS[c["op"]].choices for v in (3, 0.5, "tanh", "", "GELU")]
        name, value = wrong[int(rng.integers(len(wrong)))]
        c["attrs"][name] = value
        if value is None:
            del c["attrs"][name]
    elif kind == "int8_min":  # int8 values down to -128, which int8-dynamic weights may not hold
        c["int8_min"] = True
    elif kind == "wrapped_scale":
        c["attrs"].update(quant_mode="int4", block_size=I64_MAX)
        for t in ins:
            if t["name"] in SPECS[c["op"]].scale_inputs and len(t["shape"]) >= 2:
                t["shape"][-2] = 0
    for t in ins:
        if t["dtype"] == INT4 or max(t["shape"], default=0) > BIG_DIM:
            t["const"] = True
    return c


def fuzz_cases(n: int, seed: int = 17) -> list:
    """``n`` cases of the fuzzed ops in turn: each op's first rounds are valid nodes in each of its modes, the
    later ones valid nodes of a random mode changed 0 to 2 times. Shuffled, so that every batch has all kinds."""
    rng = np.random.default_rng(seed)
    ops = [op for op in SPECS if family(op) in SIZES]
    cases = []
    for i in range(n):
        op, r = ops[i % len(ops)], i // len(ops)
        m = modes(op)
        case = valid_case(rng, op, m[r] if r < len(m) else m[int(rng.integers(len(m)))])
        for _ in range(0 if r < len(m) else int(rng.choice([0, 1, 1, 1, 2]))):
            case = mutate(rng, case)
        cases.append(case)
    return [cases[i] for i in rng.permutation(n)]


# -- the worker (this file run as a script): builds and runs each case, one result line per case -------------------
def _tensor(rng, name: str, dtype: str, shape: list, lo: int):
    """An initializer of ``shape`` (raw data: no numpy array of that shape is needed)."""
    from onnx import TensorProto
    n = 1
    for v in shape:
        n *= v
    t = TensorProto(name=name, data_type=_onnx_type(dtype), dims=shape)
    t.raw_data = (bytes(rng.integers(0, 256, (n + 1) // 2, dtype=np.uint8)) if dtype == INT4
                  else _values(rng, name, dtype, n, lo).tobytes())
    return t


def _values(rng, name: str, dtype: str, n: int, lo: int) -> np.ndarray:
    """``n`` values of ``name``, integers from ``lo`` (-127 or -128)."""
    if dtype == I64:
        return rng.integers(0, 4, n).astype(np.int64)
    if dtype in (I8, I32):
        return rng.integers(lo, 128, n).astype(dtype)
    if dtype == U8:
        return rng.integers(0, 256, n).astype(np.uint8)
    v = rng.standard_normal(n) * 0.3
    if name == "n" or name in HOST_SCALARS or name.endswith("_scale"):  # the sLSTM normaliser, host scalars, scales
        v = np.abs(v) + 0.1
    return v.astype(dtype)


def _onnx_type(dtype: str) -> int:
    from onnx import TensorProto
    return {F32: TensorProto.FLOAT, F16: TensorProto.FLOAT16, F64: TensorProto.DOUBLE, I8: TensorProto.INT8,
            U8: TensorProto.UINT8, I32: TensorProto.INT32, I64: TensorProto.INT64, INT4: TensorProto.INT4}[dtype]


def _run(case: dict, block_size=None) -> list:
    import onnxruntime as ort
    from onnx import helper

    from qlstm_edge.runtime import native_lib

    rng = np.random.default_rng(len(json.dumps(case)))  # the same values for the same case
    attrs = dict(case["attrs"])
    if block_size is not None:
        attrs["block_size"] = block_size
    inits, graph_inputs, feeds = [], [], {}
    lo = -128 if case.get("int8_min") else -127
    for t in case["inputs"]:
        if not t["name"]:
            continue
        if t["const"]:
            inits.append(_tensor(rng, t["name"], t["dtype"], t["shape"], lo))
        else:
            n = int(np.prod(t["shape"], dtype=np.int64))
            feeds[t["name"]] = _values(rng, t["name"], t["dtype"], n, lo).reshape(t["shape"])
            graph_inputs.append(helper.make_tensor_value_info(t["name"], _onnx_type(t["dtype"]), None))
    legacy = any(t["dtype"] == INT4 for t in case["inputs"])
    node = helper.make_node(case["op"], [t["name"] for t in case["inputs"]], [n for n, _ in case["outputs"]],
                            domain=DOMAIN, **attrs)
    graph = helper.make_graph([node], "fuzz", graph_inputs,
                              [helper.make_tensor_value_info(n, _onnx_type(t), None) for n, t in case["outputs"]],
                              initializer=inits)
    model = helper.make_model(graph, ir_version=10 if legacy else 8, opset_imports=[
        helper.make_opsetid("", 21 if legacy else 17), helper.make_opsetid(DOMAIN, 1)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 4
    native_lib.register(so)
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _check_valid(case: dict, out: list) -> str:
    """Why a valid case's outputs are wrong ('' when right)."""
    for o, want in zip(out, case["expect"]):
        if list(o.shape) != want:
            return f"output shape {list(o.shape)} != contract {want}"
        if o.dtype != np.int64 and not np.isfinite(o).all():
            return "non-finite output"
    if "same_as_block" in case:
        for a, b in zip(out, _run(case, case["same_as_block"])):
            if not np.array_equal(a, b):
                return f"block_size {case['attrs']['block_size']} differs from one block ({case['same_as_block']})"
    return ""


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM). ru_maxrss is not it: a process started by exec keeps the
    peak of the process it replaced, so a worker of a large pytest process would report pytest's memory."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # no procfs: ru_maxrss, an upper bound
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def worker(path: str) -> None:
    import onnx  # noqa: F401 - imported before the first case, so no case's time counts the imports
    import onnxruntime  # noqa: F401

    from qlstm_edge.runtime import native_lib
    native_lib.status()
    cases = json.loads(Path(path).read_text())
    for i, case in enumerate(cases):
        print(f"START {i}", flush=True)
        t0 = time.perf_counter()
        res = {"i": i, "ok": True, "error": "", "kind": ""}
        try:
            out = _run(case)
            if case["valid"]:
                res["error"] = _check_valid(case, out)
                res["ok"] = not res["error"]
        except Exception as e:  # noqa: BLE001 - every clean error is recorded, the parent judges it
            res.update(ok=False, error=str(e)[:400], kind=f"{type(e).__module__}.{type(e).__name__}")
        res["seconds"] = time.perf_counter() - t0
        res["rss_mb"] = peak_rss_mb()
        print("DONE " + json.dumps(res), flush=True)


# -- the parent: runs batches in subprocesses and judges the results ------------------------------------------------
def run_cases(cases: list, isa: str = "auto") -> list:
    """Results of ``cases`` run by one worker subprocess under QLSTM_EDGE_NATIVE_ISA=isa; fails on a crash."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cases, f)
    env = dict(os.environ, QLSTM_EDGE_NATIVE_ISA=isa, OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), f.name], env=env, capture_output=True,
                              text=True, timeout=300)
    finally:
        os.unlink(f.name)
    started = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("START ")]
    results = [json.loads(line[5:]) for line in proc.stdout.splitlines() if line.startswith("DONE ")]
    if proc.returncode != 0:
        last = cases[started[-1]] if started else None
        raise AssertionError(f"the worker died (exit {proc.returncode}) running case {started[-1:]} "
                             f"(ISA {isa}): {json.dumps(last)}\n{proc.stderr[-2000:]}")
    assert len(results) == len(cases), proc.stderr[-2000:]
    return results


REFUSED_SHAPE = re.compile(r"input '(\w+)' must have (?:shape |rank \d+ \()(.*?)(?: = \[|\), got)")


def named_shape(case: dict, error: str) -> str:
    """How ``error`` refusing the shape of a regular input (not a matrix: their layouts vary with the mode) fails
    to name the op table's shape of it ('' when it names it, or refuses no such input)."""
    m = REFUSED_SHAPE.search(error)
    spec = SPECS[case["op"]]
    shape = {p.name: p.shape for p in spec.inputs if p.name not in spec.matrices}.get(m[1]) if m else None
    return "" if shape is None or m[2].startswith(shape) else f"names {m[2]!r}, not the op table's {shape}"


def judge(cases: list, results: list, isa: str) -> None:
    for case, res in zip(cases, results):
        what = f"case {res['i']} (ISA {isa}): {json.dumps(case)}\n-> {res}"
        if case["valid"]:
            assert res["ok"], "a contract-valid node must run correctly: " + what
        elif not res["ok"]:  # a clean error: onnxruntime's (or numpy's on an output it cannot hold), with a text
            assert res["kind"].startswith(("onnxruntime.", "builtins.ValueError")) and res["error"], what
            assert "bad_alloc" not in res["error"], "a refused shape must not reach an allocation: " + what
            assert not named_shape(case, res["error"]), named_shape(case, res["error"]) + ": " + what
        assert res["seconds"] < CASE_SECONDS and res["rss_mb"] < MAX_RSS_MB, "a shape that costs a lot: " + what


def _isas() -> list:
    from qlstm_edge.runtime import native_lib
    supported = native_lib.status()["isa_supported"]
    return [isa for isa in native_lib.ISA_CHOICES if supported.get(isa)]


N_CASES = 480


def test_fuzz_covers_every_native_op(lib_status):
    """Every op the native library registers is fuzzed. A new op fails here until its family's size relations are
    in ``SIZES`` at the top of this file: ``"<family>": Sizes({<free size>: range(lo, hi), ...}, lambda d:
    {<derived size>: ...})``, naming every size its spec's shapes use but B and T (its ports, element types,
    matrices, host scalars and attributes are read from the spec in qlstm_edge/families/<family>/ops.py)."""
    for op in lib_status["ops"]:
        assert op in SPECS, f"the native library registers {op}, which qlstm_edge/ops.py does not declare"
        sizes = SIZES.get(family(op))
        named = set(sizes.draw) | set(sizes.derived(dict.fromkeys(sizes.draw, 1))) if sizes else set()
        missing = sorted(symbols(op) - named - {"B", "T"})
        assert sizes and not missing, (
            f"{op} is not fuzzed: add SIZES[{family(op)!r}] in tests/native/test_op_fuzz.py, the range of each free "
            f"size of a valid node and the sizes derived from them (missing: {missing}; its shapes: "
            f"{list(dict.fromkeys(p.shape for p in SPECS[op].inputs + SPECS[op].outputs))})")


def test_fuzz_every_native_op(lib_status):
    cases = fuzz_cases(N_CASES)
    isas = _isas()
    valid = sum(c["valid"] for c in cases)
    assert valid >= N_CASES // 6 and N_CASES - valid >= N_CASES // 2  # both kinds drawn
    assert {(c["op"], c["mode"]) for c in cases if c["valid"]} == {(op, m) for op in SPECS if family(op) in SIZES
                                                                    for m in modes(op)}  # every op in every mode
    size = ceil_div(N_CASES, len(isas))
    for b, isa in enumerate(isas):  # a batch per ISA
        batch = cases[b * size:(b + 1) * size]
        judge(batch, run_cases(batch, isa), isa)


# -- the reproducers ---------------------------------------------------------------------------------------
REPRO_DIMS = {"QLLSTMCell": {"B": 2, "T": 1, "D": 16, "H": 9}, "PRLSTMSequence": {"B": 2, "T": 3, "D": 5, "H": 6,
              "K": 4, "R": 1}, "sLSTMSequence": {"B": 2, "T": 3, "NH": 2, "DH": 5},
              "xLSTMLargeBlockSequence": {"B": 2, "T": 3, "E": 6, "NH": 2, "DK": 3, "DV": 2, "U": 5}}


def repro_case(op: str, block_size: int, scale_rows=None, const: bool = True) -> dict:
    """A valid int4 ``op`` node (packed weights) with ``block_size``; ``scale_rows`` replaces every scale's row
    count (the crafted file's 0, what (K + block - 1) / block wrapped to)."""
    d = REPRO_DIMS[op]
    ins, outs = contract(op, d, "int4", block_size)
    inputs = [{"name": n, "dtype": t, "shape": list(s), "const": const and n in weight_inputs(op)}
              for n, t, s in ins]
    for t in inputs:
        if scale_rows is not None and t["name"] in SPECS[op].scale_inputs:
            t["shape"][-2] = scale_rows
    return {"op": op, "attrs": attributes(op, "int4", block_size), "inputs": inputs,
            "outputs": [[n, t] for n, t, _ in outs], "dims": d, "mode": "int4", "valid": scale_rows is None,
            "expect": [s for _, _, s in outs], "same_as_block": max_k(op, d)}


def test_int4_block_size_2_63_with_empty_scales_is_refused(lib_status):
    """The crafted int4 file of issue 17: block_size = 2^63 - 1 and scales [0, N] passed the check, whose
    ceil(K / block) wrapped to 0, and the AVX2 weight-only product read the scales out of bounds (SIGSEGV). Now
    ceil(K / block) = 1 and the empty scales are refused, naming the input."""
    cases = [repro_case(op, I64_MAX, scale_rows=0, const=const) for op in REPRO_DIMS for const in (True, False)]
    for isa in _isas():
        for case, res in zip(cases, run_cases(cases, isa)):
            op, first = case["op"], SPECS[case["op"]].scale_inputs[0]
            assert not res["ok"] and f"{op}: input '{first}' must have shape" in res["error"], res
            rows = ", ".join(map(str, case["inputs"][[t["name"] for t in case["inputs"]].index(first)]["shape"][:-2]))
            lead = rows + ", " if rows else ""
            assert f"= [{lead}1, " in res["error"] and f"got [{lead}0, " in res["error"], res


def test_int4_block_size_beyond_k_is_one_block(lib_status):
    """block_size beyond every K (2^31, 2^32, 2^63 - 1) is one block per matrix: scales [1, N], and the numbers of
    block_size = K, bit for bit (judge checks same_as_block)."""
    cases = [repro_case(op, bs, const=const) for op in REPRO_DIMS for bs in (2 ** 31, 2 ** 32, I64_MAX)
             for const in (True, False)]
    for isa in _isas():
        judge(cases, run_cases(cases, isa), isa)


def test_every_input_one_off_is_refused_naming_its_shape(lib_status):
    """Each regular input (not a matrix, not a scalar) of every fuzzed op with its last dimension one too long is
    refused, and a refusal of a regular input's shape names the op table's shape of it (judge): the xLSTMLarge
    block ops gave their biases and norm weights the shape "a vector as long as the output of its product or
    norm"."""
    rng = np.random.default_rng(3)
    cases = []
    for op in (op for op in SPECS if family(op) in SIZES):
        spec = SPECS[op]
        for name in (p.name for p in spec.inputs if p.name not in spec.matrices and p.shape != "[]"):
            case = dict(valid_case(rng, op, None), valid=False)
            next(t for t in case["inputs"] if t["name"] == name)["shape"][-1] += 1
            cases.append(case)
    results = run_cases(cases)
    judge(cases, results, "auto")
    assert not any(r["ok"] for r in results), [c for c, r in zip(cases, results) if r["ok"]]


def test_left_out_scale_is_refused(lib_status):
    """A quantized node that leaves out a scale (ONNX's empty name for an optional input) gave the kernel no value
    for it, which loading the inputs dereferenced (SIGSEGV, found by this fuzz). Now refused, naming the input."""
    rng = np.random.default_rng(5)
    cases, needles = [], []
    for op in (op for op in SPECS if SPECS[op].matrices and family(op) in SIZES):
        for mode, scale in (("int8", SPECS[op].scale_inputs[0]), ("int4", SPECS[op].scale_inputs[-1])):
            case = dict(valid_case(rng, op, mode), valid=False)
            next(t for t in case["inputs"] if t["name"] == scale)["name"] = ""
            cases.append(case)
            needles.append(f"{op}: input '{scale}' is missing (the node gives it an empty name)")
    results = run_cases(cases)
    for needle, res in zip(needles, results):
        assert not res["ok"] and needle in res["error"], (needle, res)
    judge(cases, results, "auto")


def degenerate_cases() -> list:
    """Small files whose sizes cost a lot: zero-size dimensions next to huge ones (every tensor empty, all of them
    initializers); ``empty`` gives a tensor an empty shape where the sizes alone would make it large (its own shape
    is checked after the sizes)."""
    def case(op, mode, d, **empty):
        ins, outs = contract(op, d, mode, 32)
        return {"op": op, "attrs": attributes(op, mode, 32), "outputs": [[n, t] for n, t, _ in outs], "dims": d,
                "mode": mode, "valid": False,
                "inputs": [{"name": n, "dtype": t, "shape": empty.get(n, s), "const": True} for n, t, s in ins]}
    return [
        (case("sLSTMSequence", None, {"B": 1, "T": 1, "NH": 2 ** 21, "DH": 0}),
         "sLSTMSequence: the head count NH (R's second dimension) must be in [1, 4096], got 2097152"),
        (case("sLSTMCell", "int8", {"B": 1, "T": 1, "NH": 2, "DH": 0}),
         "sLSTMCell: the head size DH (R's third dimension) must be in [1, 16777216], got 0"),
        (case("sLSTMCell", "int4", {"B": 0, "T": 1, "NH": 4096, "DH": 4097}, R=[4, 4096, 4097, 0],
              R_scale=[4, 4096, 0, 4097], b=[0]),
         "sLSTMCell: the hidden size H = NH * DH (R's second and third dimensions) must be in [1, 16777216], "
         "got 16781312"),
        (case("PRLSTMSequence", "int4", {"B": 0, "T": 2, "D": 2 ** 40, "H": 0, "K": 3, "R": 2 ** 40}),
         "PRLSTMSequence: the input size D (x's last dimension, W_leaf's first) must be in [1, 16777216], "
         "got 1099511627776"),
        (case("PRLSTMStep", "int8-dynamic", {"B": 1, "T": 1, "D": 3, "H": 0, "K": 3, "R": 2 ** 40}),
         "PRLSTMStep: the hidden size H (block_h's last dimension, W_unary's second) must be in [1, 16777216], got 0"),
        (case("PRLSTMStep", None, {"B": 1, "T": 1, "D": 3, "H": 1, "K": 3, "R": 2 ** 20}, W_unary=[2 ** 20, 1, 0],
              b_unary=[2 ** 20, 0]),
         "PRLSTMStep: the number of unary refinements R (W_unary's first dimension) must be in [0, 1024], "
         "got 1048576"),
        (case("mLSTMSequence", None, {"B": 0, "T": 2 ** 40, "NH": 2 ** 40, "DK": 0, "DV": 2 ** 40}),
         "mLSTMSequence: the head count NH (q's third dimension) must be in [1, 4096], got 1099511627776"),
        (case("mLSTMCell", None, {"B": 1, "T": 1, "NH": 2, "DK": 3, "DV": 0}),
         "mLSTMCell: the value size DV (v's last dimension) must be in [1, 16777216], got 0"),
        (case("QLLSTMSequence", "int4", {"B": 1, "T": 2 ** 40, "D": 0, "H": 4}),
         "QLLSTMSequence: the input size D (x's last dimension) must be in [1, 16777216], got 0"),
        (case("QLLSTMCell", "int8-dynamic", {"B": 0, "T": 1, "D": 2 ** 62, "H": 0}),
         "QLLSTMCell: the input size D (x's last dimension) must be in [1, 16777216], got 4611686018427387904"),
        (case("QLLSTMCell", None, {"B": 2, "T": 1, "D": 3, "H": 0}),
         "QLLSTMCell: the hidden size H (h's second dimension) must be in [1, 16777216], got 0"),
        (case("xLSTMLargeBlockSequence", None, {"B": 0, "T": 2 ** 40, "E": 0, "NH": 2 ** 20, "DK": 2 ** 20,
                                                "DV": 2 ** 20, "U": 2 ** 40},
              b_qkvo=[0], b_if=[0], head_norm_weight=[0], head_norm_bias=[0], b_up=[0]),
         "xLSTMLargeBlockSequence: the embedding size E (x's last dimension) must be in [1, 16777216], got 0"),
        (case("xLSTMLargeBlock", "int4", {"B": 1, "E": 4, "NH": 4097, "DK": 0, "DV": 0, "U": 3}),
         "xLSTMLargeBlock: the head count NH (C's second dimension) must be in [1, 4096], got 4097"),
        (case("xLSTMLargeBlock", "int8-dynamic", {"B": 0, "E": 4, "NH": 4096, "DK": 2 ** 12, "DV": 2 ** 12, "U": 3},
              W_qkvo=[4, 0], b_qkvo=[0], head_norm_weight=[0], head_norm_bias=[0], W_out=[0, 4], W_qkvo_scale=[0]),
         "xLSTMLargeBlock: the width 2 NH DK + 2 NH DV (C's dimensions) must be in [1, 16777216], got 67108864"),
        (case("xLSTMLargeBlockSequence", "int8", {"B": 2, "T": 3, "E": 5, "NH": 2, "DK": 3, "DV": 2, "U": 0}),
         "xLSTMLargeBlockSequence: the FFN size U (W_down's first dimension) must be in [1, 16777216], got 0"),
    ]


def test_degenerate_shapes_are_refused_cheaply(lib_status):
    """Issue 17 item 7: an empty sLSTM R [4, 2^21, 0, 0] cost 1.65 GB and 1-3 s per native step. Zero-size
    widths and head counts, widths or products of them above 2^24, more than 4096 heads or 1024 unary refinements
    are refused, naming the input and the bound, before any packing or allocation."""
    pairs = degenerate_cases()
    cases = [c for c, _ in pairs]
    results = run_cases(cases)
    for (_, needle), res in zip(pairs, results):
        assert not res["ok"] and needle in res["error"], (needle, res)
    judge(cases, results, "auto")


if __name__ == "__main__":
    worker(sys.argv[1])
