"""Baselines for the seed paper's comparison: the same model shape built on torch.nn.LSTM / GRU."""
from ...registry import Family, register
from .model import LSTMConfig, LSTMModel

register(Family.for_config_class("rnn-baseline", LSTMModel, LSTMConfig,
                                 description="LSTM / GRU / BiLSTM baseline (torch.nn)"))

__all__ = ["LSTMConfig", "LSTMModel"]
