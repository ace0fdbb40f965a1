"""Model configs: plain dataclasses that round-trip through JSON (checkpoints, ONNX metadata)."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict


class ConfigError(ValueError):
    """A model config that cannot describe a valid model."""


@dataclasses.dataclass
class ModelConfig:
    """Base of every family's config: JSON round trip and validation with clear messages."""

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]):
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; known fields are {sorted(known)}")
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_size", "_layers")) and value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(f"{type(self).__name__}.{f.name} must be a positive integer, got {value!r}")
        if hasattr(self, "vocab_size") and hasattr(self, "input_size"):
            if (self.vocab_size is None) == (self.input_size is None):
                raise ConfigError(f"{type(self).__name__}: set exactly one of vocab_size (token input) and "
                                  f"input_size (feature input); got vocab_size={self.vocab_size}, "
                                  f"input_size={self.input_size}")
        dropout = getattr(self, "dropout", 0.0)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"{type(self).__name__}.dropout must be in [0, 1), got {dropout}")
