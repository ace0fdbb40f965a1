"""``qlstm-edge generate``: greedy decoding of an exported language model (registered in cli.py)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click


def _parse_ids(text: str):
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integer token ids, e.g. 1,2,3; got {text!r}")
    if not ids:
        raise click.BadParameter("the prompt needs at least one token id")
    return ids


@click.command("generate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prompt-ids", required=True, help="Comma-separated prompt token ids, e.g. 1,2,3.")
@click.option("--max-new-tokens", type=click.IntRange(min=0), default=32, show_default=True,
              help="How many tokens to generate.")
@click.option("--native", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="auto: native kernels when the library has them; on: require them; off: function bodies.")
@click.option("--providers", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def generate(model, prompt_ids, max_new_tokens, native, providers, as_json):
    """Greedy-decode MAX_NEW_TOKENS tokens from MODEL (an exported language model, .onnx) after a prompt.

    Each step feeds the previous token through the streaming runtime and takes the argmax of the logits.
    """
    from .generate import greedy_generate
    from .runtime import StreamingSession

    prompt = _parse_ids(prompt_ids)
    session = StreamingSession(model, native=native, providers=providers)
    start = time.perf_counter()
    ids = greedy_generate(session, prompt, max_new_tokens).tolist()
    seconds = time.perf_counter() - start
    if as_json:
        click.echo(json.dumps({"prompt_ids": prompt, "generated_ids": ids, "seconds": round(seconds, 6),
                               "op_path": session.op_path, "provider": session.provider}))
        return
    click.echo(" ".join(map(str, ids)))
    click.echo(f"{len(ids)} tokens in {seconds:.3f} s ({session.op_path} on {session.provider})", err=True)
