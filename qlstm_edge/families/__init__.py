"""Model families. Each is one folder: PyTorch module, config, export recipe; importing it registers it."""
from . import baseline, qllstm  # noqa: F401
