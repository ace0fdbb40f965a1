"""Commands that need an extra of qlstm-edge say so, instead of failing with a traceback.

``pip install qlstm-edge`` is the device install: the streaming runtime and the commands that only read an
exported file (``stream``, ``generate``, ``info FILE.onnx``). Exporting, parity, quantization reports,
training and ``info`` on a checkpoint run PyTorch models: they need the ``export`` extra.
"""
from __future__ import annotations

import importlib

import click

EXTRA_MODULES = {"export": ("torch", "safetensors")}  # the modules an extra installs that its commands import


def require_extra(what: str, extra: str = "export") -> None:
    """Raise a ``click.ClickException`` naming ``extra`` when one of its modules does not import here."""
    for module in EXTRA_MODULES[extra]:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise click.ClickException(f"{what} needs the {extra} extra ({e}): "
                                       f"pip install 'qlstm-edge[{extra}]'") from None
