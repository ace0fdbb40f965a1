"""Streaming runtime over onnxruntime (installed as ``qlstm_edge.runtime``; needs no torch).

The names below load on first use (PEP 562): the PyTorch models import ``errors`` (``StreamLimitError``)
without loading onnxruntime.
"""
from qlstm_edge._lazy import lazy_attributes

_SOURCES = {
    ".errors": ["InputError", "ModelFileError", "NativeLibraryError", "StreamLimitError", "TimeLimitError"],
    ".metadata": ["METADATA_KEY", "MetadataError", "ModelMetadata", "StateSpec", "TensorSpec"],
    ".session": ["StreamingSession"],
}

__all__ = ["StreamingSession", "native_status", "StreamLimitError", "TimeLimitError", "InputError", "ModelFileError",
           "NativeLibraryError", "ModelMetadata", "MetadataError", "StateSpec", "TensorSpec", "METADATA_KEY"]


def native_status() -> dict:
    """Whether the native op library is built and loadable here: {available, path, reason, ...}."""
    from .native_lib import status

    return status()


__getattr__, __dir__ = lazy_attributes(__name__, globals(),
                                       {name: (module, name) for module, names in _SOURCES.items() for name in names},
                                       __all__)
