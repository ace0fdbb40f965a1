"""The ``qlstm-edge`` command line: info, export, parity, stream (and generate, quantize-report, train).

Importing it needs no PyTorch: the commands that run PyTorch models import it when they run, and say which
extra to install when it is missing (cli_extras.py).
"""
from __future__ import annotations

import io
import json
import signal
import sys
import threading
from pathlib import Path

import click

from ._version import __version__
from .cli_extras import EXTRA_MODULES, require_extra
from .cli_paths import refuse_output_over_input


class _Group(click.Group):
    """Errors are one clear line and exit 1; ``--debug`` shows the traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as e:  # every other failure becomes one line, unless --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(1)


def _is_onnx(path: Path) -> bool:
    return path.suffix.lower() == ".onnx"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="qlstm-edge")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def main(ctx, debug):
    """Export recurrent sequence models (QL-LSTM, ...) to ONNX with fused-cell custom ops, stream them,
    and prove parity with the PyTorch model.

    \b
    Typical flow:
      qlstm-edge info model.safetensors                   # family, config, parameters vs nn.LSTM
      qlstm-edge export model.safetensors -o model.onnx   # step-mode ONNX for streaming
      qlstm-edge parity model.safetensors model.onnx      # prove it matches PyTorch (exit 1 if not)
      qlstm-edge stream model.onnx --input x.npy --output y.npy

    \b
    pip install qlstm-edge (the device install) runs stream, generate and info on
    an .onnx file; export, parity, quantize-report, train and info on a checkpoint
    run PyTorch: pip install 'qlstm-edge[export]'.
    """
    ctx.ensure_object(dict)["debug"] = debug
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))


def _exit_on_sigterm(signum, frame):
    """SIGTERM ends a command the way Ctrl-C does, by an exception: a write in progress removes its temporary
    file (Python's default for SIGTERM is to die on the spot, leaving it). Exit status 143, as the shell's."""
    raise SystemExit(128 + signum)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(path, as_json):
    """Describe a checkpoint (.safetensors) or an exported model (.onnx).

    For a checkpoint: family, config, parameter count and that of the same model built on torch.nn.LSTM.
    For an ONNX file: family, mode, inputs, state tensors, custom ops, the native library status, and a
    warning for every integer product whose result depends on the CPU (older int8-dynamic exports multiplied
    uint8 by int8, which saturates on x86 without VNNI; re-export them).
    """
    doc = _onnx_info(path) if _is_onnx(path) else _checkpoint_info(path)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        _echo_info(path, doc)


def _onnx_info(path) -> dict:
    import onnx

    from .exporters.saturation import saturating_products
    from .runtime import StreamingSession, native_status

    s = StreamingSession(path, native="off")
    m = s.metadata
    return {"kind": "onnx", "path": str(path), "family": m.family, "mode": m.mode, "target": m.target,
            "toolkit_version": m.toolkit_version, "custom_ops": m.custom_ops, "quantization": m.quantization,
            "inputs": [vars(t) for t in m.inputs], "outputs": [vars(t) for t in m.outputs],
            "states": [vars(t) for t in m.states], "config": m.config, "native": native_status(),
            "warnings": [f"integer product that depends on the CPU: {line}; re-export the model with this "
                         f"version of qlstm-edge" for line in saturating_products(onnx.load(str(path)))]}


def _checkpoint_info(path) -> dict:
    require_extra("qlstm-edge info on a checkpoint")
    from . import count_parameters, load_checkpoint, lstm_parameter_count
    from .registry import family_of
    from .runtime import native_status

    model = load_checkpoint(path)
    family = family_of(model)
    doc = {"kind": "checkpoint", "path": str(path), "family": family.name, "config": family.config_of(model),
           "parameters": count_parameters(model), "warnings": family.diagnose(model) if family.diagnose else [],
           "native": native_status()}
    if hasattr(getattr(model, "rnn", model), "cells"):
        lstm = lstm_parameter_count(model)
        doc["lstm_parameters"] = lstm
        doc["parameter_ratio"] = round(doc["parameters"] / lstm, 4)
    return doc


def _echo_info(path, doc: dict) -> None:
    click.echo(f"{path}: {doc['kind']}, family {doc['family']}")
    for k, v in _config_lines(doc["family"], doc["config"]).items():
        click.echo(f"  {k:<14} {v}")
    if doc["kind"] == "checkpoint":
        click.echo(f"  parameters     {doc['parameters']:,}")
        if "lstm_parameters" in doc:
            saved = 100 * (1 - doc["parameter_ratio"])
            click.echo(f"  same model on torch.nn.LSTM: {doc['lstm_parameters']:,} parameters "
                       f"({saved:.1f}% fewer here)")
    else:
        click.echo(f"  mode {doc['mode']}, target {doc['target']}, custom ops {', '.join(doc['custom_ops'])}, "
                   f"quantization {doc['quantization'] or 'none (fp32)'}")
        for t in doc["inputs"]:
            click.echo(f"  input  {t['name']} {t['shape']} {t['dtype']}")
        for t in doc["outputs"]:
            click.echo(f"  output {t['name']} {t['shape']} {t['dtype']}")
        for st in doc["states"]:
            click.echo(f"  state  {st['name']} {st['shape']} {st['dtype']} ({st['input']} -> {st['output']})")
    for w in doc["warnings"]:
        click.echo(f"  warning: {w}")
    nat = doc["native"]
    where = f"available at {nat['path']} ({nat.get('arch')}, ISA {nat.get('isa')})"
    click.echo(f"  native op library: {where if nat['available'] else 'unavailable'}"
               + ("" if nat["available"] else f" ({nat['reason']})"))


def _config_lines(family_name: str, config: dict) -> dict:
    """A config as `info` prints it: the family's summary where it has one (--json prints the whole config).
    The summaries live with the families' PyTorch code: without the export extra, the whole config."""
    try:
        from .registry import UnknownFamilyError, get_family
    except ModuleNotFoundError as e:
        if e.name not in EXTRA_MODULES["export"]:
            raise
        return config

    try:
        summary = get_family(family_name).summary
    except UnknownFamilyError:
        summary = None
    return config if summary is None else summary(config)


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the .onnx file.")
@click.option("--mode", type=click.Choice(["step", "sequence"]), default="step", show_default=True,
              help="step: one time step per call; sequence: a chunk [B, T, ...] per call.")
@click.option("--target", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Execution target recorded in the file (the graph runs on both).")
@click.option("--opset", type=int, default=None,
              help="ONNX opset (default 17: loads in onnxruntime >= 1.15; int4 needs and defaults to 18).")
@click.option("--quantize", type=click.Choice(["none", "fp16", "int8", "int8-dynamic", "int4"]), default="none",
              show_default=True, help="fp16: float16 weights and products (for --target cuda); int8: int8 weights "
                                      "per output channel; int8-dynamic: int8 weights and activations (integer "
                                      "products); int4: int4 weights in blocks (opset 18, onnxruntime >= 1.15).")
@click.option("--block-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="int4: input rows per scale block.")
@click.option("--io-dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="fp16 only: float16 data input/output (recurrent states stay float32).")
def export(checkpoint, output, mode, target, opset, quantize, block_size, io_dtype):
    """Export CHECKPOINT to ONNX, one qlstm_edge custom node per recurrent layer."""
    require_extra("qlstm-edge export")
    from .exporters import export_onnx

    refuse_output_over_input(output, "'-o' / '--output'", {"input CHECKPOINT": checkpoint})
    quant = None if quantize == "none" else quantize
    path = export_onnx(checkpoint, output, mode=mode, target=target, opset=opset, quantize=quant,
                       block_size=block_size, io_dtype=io_dtype)
    click.echo(f"wrote {path} ({path.stat().st_size:,} bytes, {mode} mode, target {target}"
               + (f", {quant}" if quant else "") + ")")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--steps", type=click.IntRange(min=1), default=5000, show_default=True, help="Stream length.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Independent streams.")
@click.option("--chunks", default=None, help="Comma-separated chunk sizes for sequence mode, e.g. 1,7,64.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tolerance", type=float, default=None, help="Max abs error (default: per quantization mode).")
@click.option("--reference", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Precision of the PyTorch reference run (float64 measures the export's own error).")
@click.option("--native", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="auto: native kernels when the library is built; on: require them; off: function bodies.")
@click.option("--providers", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def parity(checkpoint, model, steps, batch, chunks, seed, tolerance, reference, native, providers, as_json):
    """Stream random data through MODEL (ONNX) and CHECKPOINT (PyTorch) and compare every step.

    Exits 1 when the max abs error on the outputs or on any final state exceeds the tolerance. A tensor on
    which the PyTorch model's own fp32 run is more than a quarter of the tolerance from the float64 one
    (ill-conditioned: e.g. an sLSTM normaliser after thousands of steps) is held to 4x that error instead;
    the report lists each such tensor.
    """
    require_extra("qlstm-edge parity")
    from .parity import check_parity

    sizes = [int(c) for c in chunks.split(",")] if chunks else None
    with click.progressbar(length=steps, label="streaming", file=sys.stderr,
                           show_pos=True) as bar:
        report = check_parity(checkpoint, model, steps=steps, batch=batch, chunk_sizes=sizes, seed=seed,
                              tolerance=tolerance, reference=reference, native=native, providers=providers,
                              progress=bar.update)
    click.echo(report.to_json() if as_json else str(report))
    sys.exit(0 if report.passed else 1)


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help=".npy file of shape [B, T, ...] (float32 features or int64 token ids).")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the per-step outputs [B, T, ...] as .npy.")
@click.option("--chunk", type=click.IntRange(min=1), default=None, help="Feed the stream in chunks of this size.")
@click.option("--native", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True)
@click.option("--providers", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def stream(model, input_path, output_path, chunk, native, providers):
    """Run an input file through MODEL as one stream and save every step's output."""
    import numpy as np

    from ._io import atomic_path
    from .runtime import StreamingSession

    refuse_output_over_input(output_path, "'--output'", {"MODEL": model, "--input file": input_path})
    try:
        x = np.load(input_path, allow_pickle=False)
    except ValueError as e:
        raise click.ClickException(f"{input_path}: not a plain .npy array ({e})")
    s = StreamingSession(model, native=native, providers=providers)
    if x.ndim < 2:
        raise click.ClickException(f"{input_path}: expected an array [B, T, ...], got shape {list(x.shape)}")
    size = chunk or x.shape[1] or 1
    ys = [s.run(x[:, t:t + size]) for t in range(0, x.shape[1], size)] or [s.run(x)]
    y = np.concatenate(ys, axis=1)
    with atomic_path(output_path) as target:
        with open(target, "wb") as fh:
            if fh.seekable():
                np.save(fh, y)
            else:  # a FIFO or a terminal: numpy writes a file's data through its position, which these lack
                buf = io.BytesIO()
                np.save(buf, y)
                fh.write(buf.getbuffer())
    click.echo(f"wrote {output_path}: outputs {list(y.shape)} ({s.op_path} on {s.provider})")


from .cli_generate import generate  # noqa: E402  (commands in their own modules)
from .cli_quant import quantize_report  # noqa: E402
from .cli_train import train  # noqa: E402

main.add_command(generate)
main.add_command(quantize_report)
main.add_command(train)


if __name__ == "__main__":
    main()
