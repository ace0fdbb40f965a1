"""Output paths of the CLI commands: an output that is one of the command's inputs is refused before any work."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

import click


def refuse_output_over_input(output: Optional[Path], option: str, inputs: Mapping[str, Optional[Path]]) -> None:
    """Raise ``click.BadParameter`` when ``output`` is the same file as one of ``inputs`` (label -> path).

    Same file means the same inode once symbolic links are followed (``os.path.samefile``): a symlink to the
    input, a hard link of it, or the input under another spelling. An output that does not exist yet is
    never an input.
    """
    if output is None or not output.exists():
        return
    for label, path in inputs.items():
        if path is not None and path.exists() and os.path.samefile(output, path):
            raise click.BadParameter(f"{output} is the same file as the {label} ({path}); writing it would "
                                     f"destroy the input: choose another output path", param_hint=option)
