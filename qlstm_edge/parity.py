"""Parity: the exported file, run through ``StreamingSession``, against the PyTorch model on the same stream.

``check_parity`` returns a report (max abs / rel error, the step of the worst error, final-state error);
``assert_parity`` raises ``AssertionError`` with that report, for users' own pytest suites.
"""
from __future__ import annotations

import copy
import itertools
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .checkpoint import load_checkpoint
from .registry import Family, family_of
from .runtime import StreamingSession

# Max abs error allowed per quantization mode (None = fp32). Keep docs/parity.md, "Tolerances", in step with this.
TOLERANCES: Dict[Optional[str], float] = {
    None: 1e-4,
    # Quantized exports: about 3x the worst error (outputs and final states) measured on random QL-LSTM
    # models, H 16-256, over 10k-100k steps (benchmarks/quant_report.py; docs/parity.md, "Tolerances"). The recurrent
    # states carry most of it (c is not squashed). Trained models can be far more sensitive on random streams:
    # judge those with quantize-report --eval.
    "fp16": 2e-3,
    "int8": 5e-2,
    "int8-dynamic": 5e-2,
    "int4": 1.0,
}
DEFAULT_CHUNKS = (1, 7, 64, 333)
# Where the PyTorch model's own fp32 run is far from exact on a tensor (an sLSTM normaliser n sums the input
# gates of the whole stream: ~150 after 2,000 steps, where one fp32 ulp is 1.5e-5, and PyTorch's own fp32 run
# misses the float64 one by up to 8e-5 there), no fp32 export can be held to the tolerance: such a tensor is
# judged against CONDITIONING times PyTorch's own fp32 error on it instead (float64 reference only; never less
# than the tolerance). docs/parity.md, "Tolerances".
CONDITIONING = 4.0
REL_FLOOR = 1e-3  # relative error is |a - b| / max(|b|, REL_FLOOR)
REFERENCE_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class UnstableModelError(ArithmeticError):
    """The reference model diverges (NaN/Inf) on the parity stream, so there is nothing to compare."""


@dataclass
class ParityReport:
    family: str
    mode: str
    steps: int
    batch: int
    chunk_sizes: List[int]
    provider: str
    op_path: str
    quantization: Optional[str]
    tolerance: float
    reference: str
    max_abs: float
    max_rel: float
    worst_step: int
    worst_tensor: str
    output_max_abs: float
    state_max_abs: Dict[str, float] = field(default_factory=dict)
    fp32_floor: Optional[float] = None  # the PyTorch model's own fp32 error vs float64 on this stream: outputs
    fp32_floor_states: Dict[str, float] = field(default_factory=dict)  # ... and each final state

    def floor(self, tensor: str) -> Optional[float]:
        """PyTorch's own fp32 error on ``tensor`` ("output" or a state's name); None without a float64 reference."""
        return self.fp32_floor if tensor == "output" else self.fp32_floor_states.get(tensor)

    def allowed(self, tensor: str) -> float:
        """The error allowed on ``tensor``: the tolerance, or CONDITIONING times PyTorch's own fp32 error on it
        where that is larger (an ill-conditioned tensor, see CONDITIONING)."""
        floor = self.floor(tensor)
        return self.tolerance if floor is None else max(self.tolerance, CONDITIONING * floor)

    def errors(self) -> Dict[str, float]:
        return {"output": self.output_max_abs, **self.state_max_abs}

    @property
    def passed(self) -> bool:
        return all(e <= self.allowed(t) for t, e in self.errors().items())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        chunks = f", chunks {self.chunk_sizes}" if self.mode == "sequence" else ""
        return (f"parity {verdict}: {self.family} {self.mode} ({self.quantization or 'fp32'}, {self.op_path} on "
                f"{self.provider}) vs PyTorch in {self.reference}, {self.steps} steps x batch {self.batch}{chunks}\n"
                f"  max abs error {self.max_abs:.3e} (tolerance {self.tolerance:.1e}) in {self.worst_tensor}"
                f" at step {self.worst_step}\n"
                f"  max rel error {self.max_rel:.3e}; outputs {self.output_max_abs:.3e}; "
                f"final states {max(self.state_max_abs.values(), default=0.0):.3e}"
                + ("" if self.fp32_floor is None else
                   f"\n  PyTorch's own fp32 run is {self.fp32_floor:.3e} from float64 on the outputs (conditioning)")
                + "".join(f"\n  {'output' if t == 'output' else 'final state ' + t}: ill-conditioned (PyTorch's own "
                          f"fp32 error on it is {self.floor(t):.3e}), allowed {self.allowed(t):.3e}, "
                          f"error {e:.3e}" for t, e in self.errors().items() if self.allowed(t) > self.tolerance))


def random_inputs(session: StreamingSession, steps: int, batch: int, seed: int) -> np.ndarray:
    """A stream the model accepts: standard-normal features, or uniform token ids from the vocabulary."""
    spec = session.metadata.inputs[0]
    shape = [d for d in (spec.shape[2:] if session.mode == "sequence" else spec.shape[1:])]
    rng = np.random.default_rng(seed)
    if spec.range is not None:
        return rng.integers(spec.range[0], spec.range[1], size=(batch, steps, *shape), dtype=np.int64)
    return rng.standard_normal((batch, steps, *shape)).astype(spec.dtype)  # float16 for fp16-io exports


def chunk_bounds(steps: int, sizes: Sequence[int]):
    """(start, end) of each chunk when a stream of ``steps`` is fed in chunks of ``sizes`` (cycled)."""
    t = 0
    for size in itertools.cycle(sizes):
        if t >= steps:
            return
        yield t, min(t + size, steps)
        t += size


def documented_tolerance(recipe, quant: Optional[str]) -> float:
    """The tolerance parity applies to a family's exports in quantization mode ``quant`` (None = fp32): the
    family recipe's own ``quantization_tolerances`` entry where measurements needed one, else TOLERANCES."""
    family_tol = recipe.quantization_tolerances
    return family_tol.get(quant, TOLERANCES.get(quant, TOLERANCES[None]))


class _Reference(NamedTuple):
    """The PyTorch model's run on the parity stream: outputs and final states in the reference dtype, and its
    own fp32 run's error against them (float64 reference only)."""
    y: np.ndarray
    state: Dict[str, np.ndarray]
    floor: Optional[float]
    state_floor: Dict[str, float]


def check_parity(model: Union[nn.Module, str, os.PathLike], onnx_path: Union[str, os.PathLike], *,
                 steps: int = 5000, batch: int = 1, chunk_sizes: Optional[Sequence[int]] = None, seed: int = 0,
                 tolerance: Optional[float] = None, native="auto", providers=None, inputs: Optional[np.ndarray] = None,
                 reference: str = "float64", progress: Optional[Callable[[int], None]] = None) -> ParityReport:
    """Stream ``steps`` steps of random (or given ``inputs`` [B, T, ...]) data through both and compare.

    In sequence mode the stream is fed in chunks cycling through ``chunk_sizes`` with state carried across.
    ``reference``: "float64" (default) evaluates a float64 copy of the PyTorch model, so the report measures
    the export's own error against the model's exact maths; "float32" compares with the model as it is
    (then two fp32 roundings are compared, and a sensitive trained model shows their sum).
    ``progress`` is called with the number of steps just completed (for progress bars).
    """
    if not isinstance(model, nn.Module):
        model = load_checkpoint(model)
    model.eval()
    session = StreamingSession(onnx_path, native=native, providers=providers)
    family = _family_of_export(model, session, onnx_path)
    recipe = family.recipe()
    ref_model = _reference_model(model, reference)
    x = _parity_stream(session, inputs, steps, batch, seed)
    batch, steps = x.shape[0], x.shape[1]
    sizes = _chunk_sizes(chunk_sizes, session.mode)
    quant = (session.metadata.quantization or {}).get("mode")
    tol = documented_tolerance(recipe, quant) if tolerance is None else float(tolerance)
    session.reset(batch_size=batch)
    ref = _run_reference(recipe, model, ref_model, x, reference)
    _check_reference_finite(ref.y, batch, steps)
    y_got = _stream(session, x, sizes, progress)
    return ParityReport(family=family.name, mode=session.mode, steps=steps, batch=batch,
                        chunk_sizes=sizes if session.mode == "sequence" else [1], provider=session.provider,
                        op_path=session.op_path, quantization=quant, tolerance=tol, reference=reference,
                        **_errors(y_got, session.get_state(), ref), fp32_floor=ref.floor,
                        fp32_floor_states=ref.state_floor)


def _family_of_export(model: nn.Module, session: StreamingSession, onnx_path) -> Family:
    """The model's family, once the file is known to hold that family exported from the same config."""
    meta = session.metadata
    family = family_of(model)
    if meta.family != family.name:
        raise ValueError(f"{onnx_path} holds a {meta.family!r} model but the PyTorch model is {family.name!r}")
    if meta.config != family.config_of(model):
        raise ValueError(f"{onnx_path} was exported from a different {family.name} config than this model: "
                         f"file {meta.config}, model {family.config_of(model)}")
    return family


def _reference_model(model: nn.Module, reference: str) -> nn.Module:
    """The model parity compares with: a float64 copy, or the model itself ("float32")."""
    if reference not in REFERENCE_DTYPES:
        raise ValueError(f"reference must be 'float64' or 'float32', got {reference!r}")
    return copy.deepcopy(model).to(torch.float64) if reference == "float64" else model


def _parity_stream(session: StreamingSession, inputs: Optional[np.ndarray], steps: int, batch: int,
                   seed: int) -> np.ndarray:
    """The stream both run: ``inputs`` when given, else ``steps`` random steps for ``batch`` streams."""
    if inputs is not None:
        return inputs
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got steps={steps}, batch={batch}")
    return random_inputs(session, steps, batch, seed)


def _chunk_sizes(chunk_sizes: Optional[Sequence[int]], mode: str) -> List[int]:
    sizes = list(chunk_sizes or (DEFAULT_CHUNKS if mode == "sequence" else (1,)))
    if any(int(c) < 1 for c in sizes):
        raise ValueError(f"chunk sizes must be >= 1, got {sizes}")
    return sizes


def _reference_outputs(recipe, net: nn.Module, x: np.ndarray, dtype: torch.dtype):
    """(outputs [B, T, ...], final states) of ``net`` on ``x``, fed 256 steps at a time with the state carried."""
    ys, state = [], None
    for t0 in range(0, x.shape[1], 256):
        xb = torch.from_numpy(x[:, t0:t0 + 256])
        y, state = recipe.reference(net, xb.to(dtype) if xb.is_floating_point() else xb, state)
        ys.append(y)
    return np.concatenate(ys, axis=1), state


def _run_reference(recipe, model: nn.Module, ref_model: nn.Module, x: np.ndarray, reference: str) -> _Reference:
    """``ref_model`` on the stream and, against a float64 reference, the model's own fp32 error (its floor)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small recurrent steps: one thread is fastest, and much faster on a busy machine
    try:
        y_ref, ref_state = _reference_outputs(recipe, ref_model, x, REFERENCE_DTYPES[reference])
        if reference != "float64":
            return _Reference(y_ref, ref_state, None, {})
        y32, state32 = _reference_outputs(recipe, model, x, torch.float32)
    finally:
        torch.set_num_threads(threads)
    floor = float(np.abs(y32.astype(np.float64) - y_ref).max())
    state_floor = {k: float(np.abs(np.asarray(state32[k], np.float64) - v).max()) for k, v in ref_state.items()}
    return _Reference(y_ref, ref_state, floor, state_floor)


def _check_reference_finite(y_ref: np.ndarray, batch: int, steps: int) -> None:
    finite = np.isfinite(y_ref).reshape(batch, steps, -1).all(axis=(0, 2))
    if not finite.all():
        raise UnstableModelError(f"the PyTorch model itself produced non-finite outputs from step "
                                 f"{int(np.argmin(finite))} of this {steps}-step stream: its recurrence diverges "
                                 f"(see `qlstm-edge info` for stability warnings); parity cannot be judged")


def _stream(session: StreamingSession, x: np.ndarray, sizes: List[int],
            progress: Optional[Callable[[int], None]]) -> np.ndarray:
    """The session's outputs on ``x`` fed in chunks of ``sizes`` (cycled; single steps through ``step``)."""
    ys = []
    for t0, t1 in chunk_bounds(x.shape[1], sizes):
        if session.mode == "step" and t1 - t0 == 1:
            ys.append(session.step(np.ascontiguousarray(x[:, t0]))[:, None])
        else:
            ys.append(session.run(np.ascontiguousarray(x[:, t0:t1])))
        if progress is not None:
            progress(t1 - t0)
    return np.concatenate(ys, axis=1)


def _errors(y_got: np.ndarray, got_state: Dict[str, np.ndarray], ref: _Reference) -> dict:
    """The report's error fields: outputs and final states against the reference, and where the worst one is."""
    batch, steps = y_got.shape[0], y_got.shape[1]
    err = np.abs(y_got.astype(np.float64) - ref.y)
    per_step = err.reshape(batch, steps, -1).max(axis=(0, 2))
    rel = err / np.maximum(np.abs(ref.y), REL_FLOOR)
    worst_step, out_max = int(per_step.argmax()), float(per_step.max())
    state_err = {k: float(np.abs(got_state[k].astype(np.float64) - v).max()) for k, v in ref.state.items()}
    worst_state = max(state_err, key=state_err.get) if state_err else None
    max_abs, worst_tensor = out_max, "output"
    if worst_state is not None and state_err[worst_state] > out_max:
        max_abs, worst_tensor, worst_step = state_err[worst_state], f"final state {worst_state}", steps - 1
    return dict(max_abs=max_abs, max_rel=float(rel.max()), worst_step=worst_step, worst_tensor=worst_tensor,
                output_max_abs=out_max, state_max_abs=state_err)


def assert_parity(model, onnx_path, **kw) -> ParityReport:
    """``check_parity`` that raises ``AssertionError`` (with the full report) when the tolerance is exceeded."""
    report = check_parity(model, onnx_path, **kw)
    if not report.passed:
        raise AssertionError(str(report))
    return report
