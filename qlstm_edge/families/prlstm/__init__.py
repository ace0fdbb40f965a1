"""PR-LSTM family: PyTorch modules (model.py) and ONNX export recipe with its custom ops (export.py)."""
from ...registry import Family, register
from .examples import EXAMPLES
from .model import PRLSTM, PRLSTMConfig, PRLSTMModel, PRLSTMState

register(Family.for_config_class("prlstm", PRLSTMModel, PRLSTMConfig,
                                 recipe_path="qlstm_edge.families.prlstm.export:PRLSTMModelRecipe",
                                 description="PR-LSTM model: input map, parallel recursive LSTM, per-position head",
                                 examples=EXAMPLES))
register(Family.for_kwargs("prlstm-core", PRLSTM,
                           recipe_path="qlstm_edge.families.prlstm.export:PRLSTMCoreRecipe",
                           description="bare PR-LSTM (features in, h of every prefix out)"))

__all__ = ["PRLSTM", "PRLSTMConfig", "PRLSTMModel", "PRLSTMState"]
