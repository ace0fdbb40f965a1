"""qlstm-edge: quantize, export and stream recurrent sequence models on edge devices, with parity proofs.

The public names below load on first use (PEP 562), so ``import qlstm_edge.runtime`` needs no PyTorch:
the runtime installs and streams without it.
"""
from ._lazy import lazy_attributes
from ._version import __version__

_SOURCES = {
    ".checkpoint": ["CheckpointError", "load_checkpoint", "save_checkpoint"],
    ".config": ["ConfigError"],
    ".families.baseline": ["LSTMConfig", "LSTMModel"],
    ".families.prlstm": ["PRLSTM", "PRLSTMConfig", "PRLSTMModel"],
    ".families.qllstm": ["QLLSTM", "QLLSTMCell", "QLLSTMConfig", "QLLSTMModel"],
    ".params": ["count_parameters", "lstm_parameter_count"],
}

__all__ = ["__version__", "QLLSTM", "QLLSTMCell", "QLLSTMConfig", "QLLSTMModel", "PRLSTM", "PRLSTMConfig", "PRLSTMModel", "LSTMConfig", "LSTMModel",
           "save_checkpoint", "load_checkpoint", "CheckpointError", "ConfigError", "count_parameters",
           "lstm_parameter_count"]

__getattr__, __dir__ = lazy_attributes(__name__, globals(),
                                       {name: (module, name) for module, names in _SOURCES.items() for name in names},
                                       __all__)
