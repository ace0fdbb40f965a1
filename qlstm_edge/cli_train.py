"""``qlstm-edge train``: train a registered model family, chosen by name, from a JSON config."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_extras import require_extra
from .cli_paths import refuse_output_over_input


def _families_epilog() -> str:
    from .datasets import DATASETS
    from .registry import families

    fams = "\n".join(f"  {f.name:<22} {f.description}" for f in families())
    data = "\n".join(f"  {name:<22} {desc}" for name, (_, desc) in DATASETS.items())
    return f"\b\nFamilies:\n{fams}\n\n\b\nData (--data):\n{data}"


class _TrainCommand(click.Command):
    """``train --help`` lists the registered families and data sets; they are PyTorch code, loaded only then."""

    def format_epilog(self, ctx, formatter):
        try:
            epilog = _families_epilog()
        except ImportError as e:
            epilog = f"\b\nFamilies and data sets need the export extra ({e}):\n  pip install 'qlstm-edge[export]'"
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(epilog)


def _json_file(text: str):
    """The file a JSON option names, or None when the option is an inline JSON object."""
    return None if text.lstrip().startswith("{") else Path(text)


def _parse_json(text: str, what: str) -> dict:
    path = _json_file(text)
    if path is not None:
        if not path.is_file():
            raise click.BadParameter(f"{text!r} is neither a JSON object nor an existing .json file", param_hint=what)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise click.BadParameter(f"cannot read {path}: {e}", param_hint=what) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not valid JSON ({e})", param_hint=what) from None
    if not isinstance(doc, dict):
        raise click.BadParameter(f"must be a JSON object, got {type(doc).__name__}", param_hint=what)
    return doc


@click.command("train", cls=_TrainCommand)
@click.argument("family")
@click.option("-c", "--config", "config_text", default="{}", show_default=True,
              help="Model config: a JSON object, or a .json file holding one. Sizes the data fixes "
                   "(vocab_size / input_size, output_size) are filled in when left out.")
@click.option("-d", "--data", "data_spec", default="long-range-sentiment", show_default=True,
              help="Training data: NAME or NAME:ARG (listed below).")
@click.option("--data-options", default="{}", show_default=True,
              help='Data builder options as a JSON object (or a .json file), e.g. \'{"n": 2000, "length": 96}\'.')
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint to write (.safetensors). A vocabulary, when the data has one, goes next to it "
                   "as <name>.vocab.json.")
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--clip", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Gradient-norm clip (0: none).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many optimiser steps.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds initial weights and batch order: the same seed gives a bit-identical checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def train(family, config_text, data_spec, data_options, output, epochs, batch_size, lr, weight_decay, clip,
          max_steps, seed, quiet, as_json):
    """Train model FAMILY (a registry name, e.g. qllstm or rnn-baseline) and save a checkpoint.

    \b
    Examples:
      qlstm-edge train qllstm -c '{"hidden_size": 48, "embed_size": 16, "learn_alpha": false}' -o m.safetensors
      qlstm-edge train rnn-baseline -c '{"hidden_size": 48, "cell": "gru"}' -o gru.safetensors
      qlstm-edge train qllstm -c cfg.json -d forecast:co2 --epochs 20 -o co2.safetensors

    Progress goes to stderr: a live bar on a terminal, one line per epoch otherwise.
    """
    require_extra("qlstm-edge train")
    from .checkpoint import save_checkpoint
    from .config import ConfigError
    from .datasets import MissingExtraError
    from .registry import UnknownFamilyError
    from .training import TrainConfig, load_data, train_model

    user_errors = (ConfigError, ValueError, TypeError, UnknownFamilyError, OSError, FloatingPointError,
                   MissingExtraError)
    vocab_out = output.with_suffix(".vocab.json")
    data_name, _, data_arg = data_spec.partition(":")
    inputs = {"--config file": _json_file(config_text), "--data-options file": _json_file(data_options),
              "--data file": Path(data_arg) if data_name == "npz" and data_arg else None}
    refuse_output_over_input(output, "'-o' / '--output'", inputs)
    config = _parse_json(config_text, "'--config'")
    options = _parse_json(data_options, "'--data-options'")
    try:
        data = load_data(data_spec, options)
        if data.vocab is not None:
            refuse_output_over_input(vocab_out, "'-o' / '--output' (its vocabulary file)", inputs)
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, clip=clip,
                          seed=seed, max_steps=max_steps)
        result = train_model(family, config, data, cfg, progress=not quiet)
        path = save_checkpoint(result.model, output)
        vocab_path = data.vocab.save(vocab_out) if data.vocab is not None else None
    except user_errors as e:
        raise click.ClickException(str(e)) from None
    from .params import count_parameters

    doc = {"checkpoint": str(path), "vocabulary": str(vocab_path) if vocab_path else None, "family": family,
           "config": result.config, "data": data.name, "task": data.task,
           "parameters": count_parameters(result.model), **result.summary()}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    metric = "accuracy" if data.task == "classify" else "rmse"
    last = f", eval {metric} {doc['eval_metric'][-1]:.4f}" if doc["eval_metric"] else ""
    click.echo(f"wrote {path} ({family}, {doc['parameters']:,} parameters; final loss {doc['loss'][-1]:.4f}{last}; "
               f"{doc['steps']} steps in {doc['seconds']:.1f}s)")
    if vocab_path:
        click.echo(f"wrote {vocab_path} ({len(data.vocab):,} tokens)")
