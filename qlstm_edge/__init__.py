"""qlstm-edge: quantize, export and stream recurrent sequence models on edge devices, with parity proofs.

The public names below load on first use (PEP 562), so ``import qlstm_edge.runtime`` needs no PyTorch:
the runtime installs and streams without it.
"""
import importlib

from ._version import __version__

_LAZY = {
    "CheckpointError": ".checkpoint", "load_checkpoint": ".checkpoint", "save_checkpoint": ".checkpoint",
    "ConfigError": ".config",
    "LSTMConfig": ".families.baseline", "LSTMModel": ".families.baseline",
    "PRLSTM": ".families.prlstm", "PRLSTMConfig": ".families.prlstm", "PRLSTMModel": ".families.prlstm",
    "QLLSTM": ".families.qllstm", "QLLSTMCell": ".families.qllstm", "QLLSTMConfig": ".families.qllstm",
    "QLLSTMModel": ".families.qllstm",
    "count_parameters": ".params", "lstm_parameter_count": ".params",
}

__all__ = ["__version__", "QLLSTM", "QLLSTMCell", "QLLSTMConfig", "QLLSTMModel", "PRLSTM", "PRLSTMConfig", "PRLSTMModel", "LSTMConfig", "LSTMModel",
           "save_checkpoint", "load_checkpoint", "CheckpointError", "ConfigError", "count_parameters",
           "lstm_parameter_count"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
