"""The Python API end to end, with the command-line equivalent of each step (runs in under a minute).

    python samples/walkthrough/walkthrough.py [--out DIR]     # default: a temporary folder

1. train a small QL-LSTM   2. save / load a checkpoint   3. export step and sequence ONNX files
4. stream: step, run, get_state / set_state, reset(rows=...)   5. parity: check_parity / assert_parity
"""
import argparse
import json
import shlex
import tempfile
from pathlib import Path

import numpy as np
import torch

from qlstm_edge import count_parameters, load_checkpoint, lstm_parameter_count, save_checkpoint
from qlstm_edge.cli import main as cli
from qlstm_edge.cli_train import train as cli_train
from qlstm_edge.exporters import export_onnx
from qlstm_edge.parity import assert_parity, check_parity
from qlstm_edge.runtime import StreamingSession
from qlstm_edge.training import TrainConfig, load_data, train_model


def section(title: str) -> None:
    print(f"\n== {title}")


def shell(command, args) -> None:
    """Run a click command in-process, as `qlstm-edge ARGS` would from a shell."""
    args = [str(a) for a in args]
    print("$ " + shlex.join(["qlstm-edge", *([command.name] if command is not cli else []), *args]))
    try:
        command.main(args, prog_name="qlstm-edge", standalone_mode=False)
    except SystemExit as e:  # `parity` exits with its verdict
        if e.code:
            raise


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="folder for the files (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        walk(args.out or Path(tmp))
    return 0


def walk(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # Small recurrent models are thousands of tiny ops: one torch thread is faster, most of all on a busy machine.
    torch.set_num_threads(1)

    section("1. train (qlstm_edge.training.train_model: a registry family by name + a JSON-style config)")
    data = load_data("long-range-sentiment", {"n": 1000, "eval_n": 200, "length": 32})
    config = {"hidden_size": 32, "embed_size": 16, "alpha": 0.0, "learn_alpha": False}
    result = train_model("qllstm", config, data, TrainConfig(epochs=4, batch_size=64, lr=1e-2, seed=0))
    model = result.model
    print(f"held-out accuracy {result.history.eval_metric[-1]:.3f}; {count_parameters(model):,} parameters "
          f"(on torch.nn.LSTM: {lstm_parameter_count(model):,}); config filled in from the data: {result.config}")
    shell(cli_train, ["qllstm", "-c", json.dumps(config), "--data-options", '{"n": 1000, "eval_n": 200, "length": 32}',
                      "--epochs", 4,
                      "--batch-size", 64, "--lr", 0.01, "--quiet", "-o", out / "cli_model.safetensors"])

    section("2. checkpoint (safetensors + JSON config; loading runs no pickle)")
    ckpt = save_checkpoint(model, out / "model.safetensors")
    same = load_checkpoint(ckpt)
    x = data.x_eval[:2]
    with torch.no_grad():
        assert torch.equal(model(x)[0], same(x)[0])
    print(f"saved and reloaded {ckpt.name} ({ckpt.stat().st_size:,} bytes): identical outputs")
    print("CLI also trains to a bit-identical file for the same seed:",
          (out / "cli_model.safetensors").read_bytes() == ckpt.read_bytes())
    shell(cli, ["info", ckpt])

    section("3. export (one qlstm_edge custom node per layer; step: one time step per call, sequence: a chunk)")
    step_file = export_onnx(model, out / "model_step.onnx", mode="step")
    seq_file = export_onnx(model, out / "model_sequence.onnx", mode="sequence")
    print(f"{step_file.name} {step_file.stat().st_size:,} bytes, {seq_file.name} {seq_file.stat().st_size:,} bytes")
    shell(cli, ["export", ckpt, "-o", out / "cli_sequence.onnx", "--mode", "sequence"])

    section("4. stream (StreamingSession: no model code, state carried between calls)")
    tokens = data.x_eval[:2].numpy()  # two documents = two independent streams (batch 2)
    s = StreamingSession(step_file)
    print(s.describe())
    for t in range(tokens.shape[1]):
        logits = s.step(tokens[:, t])
    with torch.no_grad():
        ref = model(torch.from_numpy(tokens))[0][:, -1].numpy()
    print(f"step by step over {tokens.shape[1]} tokens: max |onnx - torch| = {np.abs(logits - ref).max():.2e}")

    chunked = StreamingSession(seq_file)
    y1 = chunked.run(tokens[:, :10])
    saved = chunked.get_state()  # persist a stream (e.g. across a device reboot) ...
    y2 = chunked.run(tokens[:, 10:])
    resumed = StreamingSession(seq_file)
    resumed.set_state(saved)  # ... and resume it exactly
    assert np.array_equal(resumed.run(tokens[:, 10:]), y2)
    print(f"run() in chunks {y1.shape[1]} + {y2.shape[1]}; get_state/set_state resumed bit-exactly; "
          f"states: {sorted(saved)}")

    chunked.reset(rows=[1])  # restart stream 1 only; stream 0 carries on
    fresh = StreamingSession(seq_file)
    assert np.array_equal(chunked.run(tokens[1:2, :5].repeat(2, 0))[1], fresh.run(tokens[1:2, :5])[0])
    print("reset(rows=[1]) restarted row 1 alone: it now matches a fresh stream")
    np.save(out / "x.npy", tokens)
    shell(cli, ["stream", seq_file, "--input", out / "x.npy", "--output", out / "y.npy", "--chunk", 8])

    section("5. parity (the exported file through the runtime vs PyTorch in float64, thousands of steps)")
    report = check_parity(model, seq_file, steps=2000, batch=2)
    print(report)
    assert_parity(model, step_file, steps=2000)  # raises AssertionError with the report; use it in your CI
    print("assert_parity passed for the step file too")
    shell(cli, ["parity", ckpt, step_file, "--steps", 2000, "--batch", 2])


if __name__ == "__main__":
    raise SystemExit(main())
