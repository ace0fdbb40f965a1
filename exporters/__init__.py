"""ONNX export: ``export_onnx(model, path, mode=..., target=...)`` for every registered model family.

The names below load on first use (PEP 562), so the torch-free parts of this package (``saturation``: the
integer-product check ``qlstm-edge info`` runs on a file) import without PyTorch; exporting needs the
``export`` extra.
"""
import importlib

_LAZY = {
    "build_onnx": ".export", "export_onnx": ".export", "TARGETS": ".export",
    "ExportRecipe": ".recipe", "Signature": ".recipe", "MODES": ".recipe",
    "DEFAULT_BLOCK_SIZE": ".quantize", "QuantizationError": ".quantize", "Quantizer": ".quantize",
}
_RENAMED = {"QUANT_MODES": (".quantize", "MODES")}

__all__ = ["export_onnx", "build_onnx", "ExportRecipe", "Signature", "MODES", "TARGETS", "QUANT_MODES",
           "Quantizer", "QuantizationError", "DEFAULT_BLOCK_SIZE"]


def __getattr__(name: str):
    module, attr = _RENAMED.get(name) or (_LAZY.get(name), name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
