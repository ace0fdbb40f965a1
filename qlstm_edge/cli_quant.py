"""``qlstm-edge quantize-report``: size, long-stream parity and task accuracy of every quantization mode.

For each mode (fp32, fp16, int8, int8-dynamic, int4) the checkpoint is exported (sequence mode) to a
temporary folder; the report gives the file size and its ratio to the fp32 file, the max abs error of the
outputs against the PyTorch model evaluated in float64 over one long random stream (running max at 1k,
10k and 100k steps, and the max over the last 1,000 steps before each, which shows whether the recurrent
error grows), the max abs error of the recurrent states (sampled every 1,000 steps; `qlstm-edge parity`
checks outputs and final states against one tolerance), and, with ``--eval data.npz``, the task metric of
the exported file next to the fp32 PyTorch model's.
"""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import click
import numpy as np

CHECKPOINTS = (1_000, 10_000, 100_000)
WINDOW = 1_000
ALL_MODES = (None, "fp16", "int8", "int8-dynamic", "int4")


def mode_label(mode: Optional[str]) -> str:
    return mode or "fp32"


def load_eval(path) -> tuple:
    """(x, y, task) from an .npz with arrays ``x`` [N, T, ...] and ``y``: [N] integer class ids (classify,
    read at the last step) or [N, T, O] float targets (regress, RMSE over every step)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f or "y" not in f:
                raise click.ClickException(f"{path}: needs arrays 'x' and 'y', has {sorted(f.files)}")
            x, y = f["x"], f["y"]
    except (OSError, ValueError) as e:
        raise click.ClickException(f"{path}: not a readable .npz file ({e})")
    if x.ndim < 2 or len(x) != len(y) or len(x) == 0:
        raise click.ClickException(f"{path}: x must be [N, T, ...] and y must have N rows; got x {list(x.shape)}, "
                                   f"y {list(y.shape)}")
    task = "classify" if y.ndim == 1 and y.dtype.kind in "iu" else "regress"
    if task == "regress" and y.shape[:2] != x.shape[:2]:
        raise click.ClickException(f"{path}: y must be [N] class ids or [N, T, O] targets, got {list(y.shape)}")
    if x.dtype == np.int32:
        x = x.astype(np.int64)
    return x, y, task


def eval_stream(x: np.ndarray, steps: int) -> np.ndarray:
    """Evaluation sequences x [N, T, ...] back to back as one stream [1, steps, ...] (repeated if short)."""
    flat = x.reshape(1, -1, *x.shape[2:])
    reps = -(-steps // flat.shape[1])
    return np.ascontiguousarray(np.concatenate([flat] * reps, axis=1)[:, :steps])


def _metric(outputs: np.ndarray, y: np.ndarray, task: str) -> float:
    if task == "classify":
        return float((outputs[:, -1].argmax(-1) == y).mean())
    return float(np.sqrt(((outputs.astype(np.float64) - y) ** 2).mean()))


def _torch_outputs(model, recipe, x: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch

    outs = []
    for i in range(0, len(x), batch):
        outs.append(recipe.reference(model, torch.from_numpy(x[i:i + batch]), None)[0])
    return np.concatenate(outs)


def _session_outputs(session, x: np.ndarray, batch: int = 256) -> np.ndarray:
    outs = []
    for i in range(0, len(x), batch):
        xb = np.ascontiguousarray(x[i:i + batch])
        session.reset(batch_size=len(xb))
        outs.append(session.run(xb))
    return np.concatenate(outs)


def quantization_report(model, *, modes: Sequence[Optional[str]] = ALL_MODES, steps: int = 10_000, batch: int = 1,
                        seed: int = 0, block_size: int = 32, eval_data: Optional[tuple] = None,
                        chunk: int = 1_000, native: str = "off", stream: Optional[np.ndarray] = None,
                        progress: Optional[Callable[[str], None]] = None) -> Dict[str, object]:
    """Measure every quantization mode of ``model`` (a module or checkpoint path); returns the report dict.

    The parity stream is random (``parity.random_inputs``: uniform token ids or standard-normal features)
    unless ``stream`` [B, T, ...] is given (e.g. evaluation sequences back to back: in-distribution data).
    """
    import torch

    from .checkpoint import load_checkpoint
    from .parity import random_inputs
    from .registry import family_of
    from .runtime import StreamingSession

    if not isinstance(model, torch.nn.Module):
        model = load_checkpoint(model)
    model.eval()
    if stream is not None:
        batch, steps = int(stream.shape[0]), int(stream.shape[1])
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got steps={steps}, batch={batch}")
    family = family_of(model)
    recipe = family.recipe()
    marks = sorted({c for c in CHECKPOINTS if c <= steps} | {steps})
    say = progress or (lambda msg: None)
    with tempfile.TemporaryDirectory(prefix="qlstm-edge-qreport-") as tmp:
        paths = _export_modes(model, Path(tmp), modes, block_size, say)
        x = random_inputs(StreamingSession(paths[None], native="off"), steps, batch, seed) if stream is None \
            else stream
        say(f"PyTorch float64 reference over {steps} steps")
        y_ref, ref_states = _float64_reference(model, recipe, x, chunk)
        base_metric = None
        if eval_data is not None:
            ex, ey, task = eval_data
            base_metric = _metric(_torch_outputs(model, recipe, ex), ey, task)
        rows: List[dict] = []
        for mode in modes:
            say(f"streaming {mode_label(mode)}")
            session = StreamingSession(paths[mode], native=native)
            row = {"mode": mode_label(mode), "bytes": paths[mode].stat().st_size,
                   "ratio": paths[mode].stat().st_size / paths[None].stat().st_size,
                   **_stream_errors(session, x, y_ref, ref_states, chunk, marks), "op_path": session.op_path}
            if eval_data is not None:
                row["metric"] = _metric(_session_outputs(session, ex), ey, task)
                row["metric_delta"] = row["metric"] - base_metric
            rows.append(row)
    doc = {"family": family.name, "config": family.config_of(model), "steps": steps, "batch": batch, "seed": seed,
           "stream": "random" if stream is None else "given",
           "block_size": block_size, "reference": "PyTorch float64", "checkpoints": marks, "window": WINDOW,
           "rows": rows}
    if eval_data is not None:
        doc["eval"] = {"task": task, "metric": "accuracy" if task == "classify" else "rmse", "n": int(len(ex)),
                       "fp32_pytorch": base_metric}
    return doc


def _export_modes(model, folder: Path, modes: Sequence[Optional[str]], block_size: int,
                  say: Callable[[str], None]) -> Dict[Optional[str], Path]:
    """The model exported in sequence mode once per mode, fp32 (None) included, into ``folder``."""
    from .exporters import export_onnx

    paths = {}
    for mode in dict.fromkeys((None, *modes)):
        say(f"exporting {mode_label(mode)}")
        paths[mode] = export_onnx(model, folder / f"{mode_label(mode)}.onnx", mode="sequence", quantize=mode,
                                  block_size=block_size)
    return paths


def _float64_reference(model, recipe, x: np.ndarray, chunk: int):
    """(outputs [B, T, ...], states after each chunk) of a float64 copy of the model on ``x``, fed ``chunk``
    steps at a time; refused when the model itself diverges on the stream."""
    import torch

    ref_model = copy.deepcopy(model).to(torch.float64)
    ys, state, ref_states = [], None, []
    for t0 in range(0, x.shape[1], chunk):
        xb = torch.from_numpy(x[:, t0:t0 + chunk])
        y, state = recipe.reference(ref_model, xb.to(torch.float64) if xb.is_floating_point() else xb, state)
        ys.append(y)
        ref_states.append(state)  # after step min(t0 + chunk, steps)
    y_ref = np.concatenate(ys, axis=1)
    if not np.isfinite(y_ref).all():
        raise ArithmeticError("the PyTorch model itself produces non-finite outputs on this stream; "
                              "its recurrence diverges (see `qlstm-edge info`), nothing to compare")
    return y_ref, ref_states


def _stream_errors(session, x: np.ndarray, y_ref: np.ndarray, ref_states: List[dict], chunk: int,
                   marks: List[int]) -> Dict[str, Dict[str, float]]:
    """A row's errors: the session streams ``x`` in chunks; the outputs' running max abs error and its max over
    the last WINDOW steps at each mark, and the states' max abs error (after each chunk) up to each mark."""
    batch, steps = x.shape[0], x.shape[1]
    got, state_err = [], []
    for k, t0 in enumerate(range(0, steps, chunk)):
        got.append(session.run(np.ascontiguousarray(x[:, t0:t0 + chunk])))
        st = session.get_state()
        state_err.append(max(float(np.abs(st[n].astype(np.float64) - v).max()) for n, v in ref_states[k].items()))
    err = np.abs(np.concatenate(got, axis=1).astype(np.float64) - y_ref).reshape(batch, steps, -1).max(axis=(0, 2))
    at = [-(-n // chunk) for n in marks]  # chunks completed at each mark
    return {"max_abs": {str(n): float(err[:n].max()) for n in marks},
            "window_max_abs": {str(n): float(err[max(0, n - WINDOW):n].max()) for n in marks},
            "state_max_abs": {str(n): max(state_err[:c]) for n, c in zip(marks, at)}}


def format_report(doc: Dict[str, object]) -> str:
    marks = doc["checkpoints"]
    head = f"{'mode':<13}{'bytes':>10}{'ratio':>7}" + "".join(f"{'max|err| @' + _k(n):>17}" for n in marks) + \
        "".join(f"{'last-1k @' + _k(n):>16}" for n in marks) + \
        "".join(f"{'states @' + _k(n):>15}" for n in marks)
    ev = doc.get("eval")
    if ev:
        head += f"{ev['metric']:>10}{'vs fp32':>10}"
    lines = [f"quantization report: {doc['family']}, {doc['stream']} stream of {doc['steps']} steps x batch "
             f"{doc['batch']} vs "
             f"{doc['reference']}" + (f"; eval {ev['metric']} on {ev['n']} sequences, fp32 PyTorch "
                                      f"{ev['fp32_pytorch']:.4f}" if ev else ""), head]
    for r in doc["rows"]:
        line = f"{r['mode']:<13}{r['bytes']:>10,}{r['ratio']:>7.3f}" + \
            "".join(f"{r['max_abs'][str(n)]:>17.3e}" for n in marks) + \
            "".join(f"{r['window_max_abs'][str(n)]:>16.3e}" for n in marks) + \
            "".join(f"{r['state_max_abs'][str(n)]:>15.3e}" for n in marks)
        if ev:
            delta = 100 * r["metric_delta"] if ev["metric"] == "accuracy" else 100 * r["metric_delta"] / ev["fp32_pytorch"]
            unit = " pt" if ev["metric"] == "accuracy" else " %"
            line += f"{r['metric']:>10.4f}{delta:>+7.2f}{unit}"
        lines.append(line)
    return "\n".join(lines)


def _k(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


@click.command("quantize-report")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--steps", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Length of the parity stream; errors are reported at 1k, 10k, 100k (those <= steps) and at "
                   "the end. Use 100000 for the long run.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Independent streams.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--modes", default="fp16,int8,int8-dynamic,int4", show_default=True,
              help="Comma-separated modes to measure besides fp32 (fp32 is always measured).")
@click.option("--block-size", type=click.IntRange(min=1), default=32, show_default=True, help="int4 block size.")
@click.option("--eval", "eval_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help=".npz with x [N, T, ...] and y ([N] class ids: accuracy at the last step; [N, T, O] targets: RMSE).")
@click.option("--stream", type=click.Choice(["random", "eval"]), default="random", show_default=True,
              help="Parity stream: random inputs, or the --eval sequences back to back (in-distribution), "
                   "repeated up to --steps.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON to this file (atomic write).")
def quantize_report(checkpoint, steps, batch, seed, modes, block_size, eval_path, stream, json_path):
    """Size, long-stream parity and (with --eval) task accuracy of every quantization mode of CHECKPOINT."""
    from .cli_extras import require_extra

    require_extra("qlstm-edge quantize-report")
    from ._io import atomic_path
    from .cli_paths import refuse_output_over_input
    from .exporters.quantize import normalize_mode

    refuse_output_over_input(json_path, "'--json'", {"input CHECKPOINT": checkpoint, "--eval file": eval_path})
    chosen = [normalize_mode(m.strip()) for m in modes.split(",") if m.strip()]  # unknown modes: a clear error
    eval_data = load_eval(eval_path) if eval_path else None
    given = None
    if stream == "eval":
        if eval_data is None:
            raise click.ClickException("--stream eval needs --eval data.npz")
        given = eval_stream(eval_data[0], steps)
    doc = quantization_report(checkpoint, modes=[None, *[m for m in chosen if m is not None]], steps=steps,
                              batch=batch, seed=seed, block_size=block_size, eval_data=eval_data, stream=given,
                              progress=lambda msg: click.echo(msg, err=True))
    click.echo(format_report(doc))
    if json_path:
        with atomic_path(json_path) as tmp:
            Path(tmp).write_text(json.dumps(doc, indent=2))
        click.echo(f"wrote {json_path}", err=True)
