"""The runtime's exceptions, in a module that imports nothing: the PyTorch models raise ``StreamLimitError`` too."""


class ModelFileError(ValueError):
    """The file cannot be streamed: not ONNX, not a qlstm-edge export, or inconsistent metadata."""


class InputError(ValueError):
    """An input or state that does not fit the model or the stream; the session's state is unchanged."""


class StreamLimitError(InputError):
    """A call that would take a stream past the most steps the model holds (a PR-LSTM stack of K levels holds
    2^K - 1; an exported file states it as metadata ``extra["max_steps"]``)."""


class TimeLimitError(RuntimeError):
    """A call that ran past the session's ``time_limit_s`` and was stopped; the session's state is unchanged."""


class NativeLibraryError(RuntimeError):
    """The native op library is missing, cannot be loaded, or onnxruntime refused it (native='on' asks for it)."""
