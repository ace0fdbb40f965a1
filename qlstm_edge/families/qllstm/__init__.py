"""QL-LSTM family: PyTorch modules (model.py) and ONNX export recipe with its custom ops (export.py)."""
from ...registry import Family, register
from .examples import EXAMPLES
from .model import QLLSTM, QLLSTMCell, QLLSTMConfig, QLLSTMModel, stability_warnings

register(Family.for_config_class("qllstm", QLLSTMModel, QLLSTMConfig,
                                 recipe_path="qlstm_edge.families.qllstm.export:QLLSTMModelRecipe",
                                 description="QL-LSTM model: input map, QL-LSTM stack, per-step head",
                                 diagnose=stability_warnings, examples=EXAMPLES))
register(Family.for_kwargs("qllstm-stack", QLLSTM,
                           recipe_path="qlstm_edge.families.qllstm.export:QLLSTMStackRecipe",
                           description="bare QL-LSTM stack (torch.nn.LSTM interface)",
                           diagnose=stability_warnings))

__all__ = ["QLLSTM", "QLLSTMCell", "QLLSTMConfig", "QLLSTMModel"]
