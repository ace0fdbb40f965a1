"""qlstm-edge: quantize, export and stream recurrent sequence models on edge devices, with parity proofs."""
from ._version import __version__
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError
from .families.baseline import LSTMConfig, LSTMModel
from .families.prlstm import PRLSTM, PRLSTMConfig, PRLSTMModel
from .families.qllstm import QLLSTM, QLLSTMCell, QLLSTMConfig, QLLSTMModel
from .params import count_parameters, lstm_parameter_count

__all__ = ["__version__", "QLLSTM", "QLLSTMCell", "QLLSTMConfig", "QLLSTMModel", "PRLSTM", "PRLSTMConfig", "PRLSTMModel", "LSTMConfig", "LSTMModel",
           "save_checkpoint", "load_checkpoint", "CheckpointError", "ConfigError", "count_parameters",
           "lstm_parameter_count"]
