"""ONNX export: ``export_onnx(model, path, mode=..., target=...)`` for every registered model family.

The names below load on first use (PEP 562), so the torch-free parts of this package (``saturation``: the
integer-product check ``qlstm-edge info`` runs on a file) import without PyTorch; exporting needs the
``export`` extra.
"""
from qlstm_edge._lazy import lazy_attributes

_SOURCES = {
    "build_onnx": (".export", "build_onnx"), "export_onnx": (".export", "export_onnx"), "TARGETS": (".export", "TARGETS"),
    "ExportRecipe": (".recipe", "ExportRecipe"), "Signature": (".recipe", "Signature"), "MODES": (".recipe", "MODES"),
    "DEFAULT_BLOCK_SIZE": (".quantize", "DEFAULT_BLOCK_SIZE"), "QuantizationError": (".quantize", "QuantizationError"),
    "Quantizer": (".quantize", "Quantizer"), "QUANT_MODES": (".quantize", "MODES"),
}

__all__ = ["export_onnx", "build_onnx", "ExportRecipe", "Signature", "MODES", "TARGETS", "QUANT_MODES",
           "Quantizer", "QuantizationError", "DEFAULT_BLOCK_SIZE"]

__getattr__, __dir__ = lazy_attributes(__name__, globals(), _SOURCES, __all__)
