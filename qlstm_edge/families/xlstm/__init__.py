"""xLSTM family: models of the official ``xlstm`` package (2.0.4+), exported with fused-cell custom ops.

Families: ``xlstm-stack`` (``xlstm.xLSTMBlockStack``), ``xlstm-lm`` (``xlstm.xLSTMLMModel``) and
``xlstm-large`` (``xlstm.xlstm_large.model.xLSTMLarge``). The package is optional
(``pip install 'qlstm-edge[xlstm]'``): without it ``import qlstm_edge`` works, these families are still
registered, and loading one of their checkpoints says what to install.
"""
from __future__ import annotations

import importlib.metadata
import re
from typing import Any, Dict, Optional

from ...registry import Family, register
from .examples import EXAMPLES

MIN_VERSION = (2, 0, 4)  # the min(exp(.), 1) gate clamps of the sLSTM arrived in xlstm 2.0.4
INSTALL_HINT = "pip install 'qlstm-edge[xlstm]'"


class XLSTMUnavailableError(ImportError):
    """An xLSTM model was asked for, but the official xlstm package (or mlstm_kernels) is missing or too old."""


def _package_problem() -> Optional[str]:
    """Why the xlstm package cannot be used here, or None."""
    try:
        version = importlib.metadata.version("xlstm")
    except importlib.metadata.PackageNotFoundError:
        return "the official xlstm package is not installed"
    parts = tuple(int(re.match(r"\d*", p).group() or 0) for p in version.split(".")[:3])
    if parts < MIN_VERSION:
        return f"xlstm {version} is installed, but qlstm-edge needs xlstm >= {'.'.join(map(str, MIN_VERSION))}"
    try:
        import xlstm  # noqa: F401
    except ImportError as e:
        return f"the xlstm package is installed but cannot be imported ({e})"
    return None


def _unavailable(name: str, module_name: str, problem: str) -> Family:
    """A family entry that explains what to install when one of its checkpoints is loaded."""
    message = f"{name} checkpoints hold xLSTM models ({module_name}); {problem}: {INSTALL_HINT}"

    def build(config: Dict[str, Any]):
        raise XLSTMUnavailableError(message)

    def config_of(model):
        raise XLSTMUnavailableError(message)

    placeholder = type(module_name, (), {"__doc__": message, "__module__": __name__})
    return Family(name, placeholder, config_of, build, description=f"{module_name} (unavailable: {problem})",
                  examples=EXAMPLES[name])


_DESCRIPTIONS = {
    "xlstm-stack": ("xLSTMBlockStack", "xlstm.xLSTMBlockStack: mLSTM/sLSTM blocks on feature vectors"),
    "xlstm-lm": ("xLSTMLMModel", "xlstm.xLSTMLMModel: embedding, xLSTM block stack, LM head"),
    "xlstm-large": ("xLSTMLarge", "xlstm.xlstm_large.model.xLSTMLarge: mLSTM language model (xLSTM 7B design)"),
}


def _register() -> None:
    problem = _package_problem()
    if problem is not None:
        for name, (module_name, _) in _DESCRIPTIONS.items():
            register(_unavailable(name, module_name, problem))
        return
    from xlstm import xLSTMBlockStack, xLSTMLMModel

    from . import model as m

    rec = "qlstm_edge.families.xlstm.export:"
    register(Family("xlstm-stack", xLSTMBlockStack, lambda mod: m.config_to_dict(mod.config), m.build_stack,
                    recipe_path=rec + "XLSTMStackRecipe", summary=m.stack_summary,
                    description=_DESCRIPTIONS["xlstm-stack"][1], examples=EXAMPLES["xlstm-stack"]))
    register(Family("xlstm-lm", xLSTMLMModel, lambda mod: m.config_to_dict(mod.config), m.build_lm,
                    recipe_path=rec + "XLSTMLMRecipe", summary=m.stack_summary,
                    description=_DESCRIPTIONS["xlstm-lm"][1], examples=EXAMPLES["xlstm-lm"]))
    if m.xLSTMLarge is None:
        register(_unavailable("xlstm-large", "xLSTMLarge", "the mlstm_kernels package (Python >= 3.11) is missing"))
    else:
        register(Family("xlstm-large", m.xLSTMLarge, lambda mod: m.large_config_dict(mod.config), m.build_large,
                        recipe_path=rec + "XLSTMLargeRecipe", summary=m.large_summary,
                        description=_DESCRIPTIONS["xlstm-large"][1], examples=EXAMPLES["xlstm-large"]))


_register()

__all__ = ["XLSTMUnavailableError", "MIN_VERSION"]
