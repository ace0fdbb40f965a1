"""Streaming runtime over onnxruntime (installed as ``qlstm_edge.runtime``; needs no torch)."""
from .metadata import METADATA_KEY, MetadataError, ModelMetadata, StateSpec, TensorSpec
from .session import (InputError, ModelFileError, NativeLibraryError, StreamingSession, StreamLimitError,
                      TimeLimitError)

__all__ = ["StreamingSession", "native_status", "StreamLimitError", "TimeLimitError", "InputError", "ModelFileError", "NativeLibraryError", "ModelMetadata",
           "MetadataError", "StateSpec", "TensorSpec", "METADATA_KEY"]


def native_status() -> dict:
    """Whether the native op library is built and loadable here: {available, path, reason, ...}."""
    from .native_lib import status

    return status()
