"""Model families. Each is one folder: PyTorch module, config, export recipe; importing it registers it."""
from . import baseline, prlstm, qllstm, xlstm  # noqa: F401
