"""Family registry: how checkpoints, the exporter and the CLI find a model family.

A family registers its module class, how to read/build its config, (lazily, since exporting needs onnx) its
export recipe, and its examples: tiny models that the tests running over every family build. Adding a family
means adding one ``qlstm_edge/families/<name>/`` package that calls :func:`register`: ``qlstm_edge.families``
imports every package it finds and the build finds every package, so nothing else is edited.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from torch import nn

from .config import ConfigError, ModelConfig


class UnknownFamilyError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class Example:
    """A tiny model of a family: every test that runs over all families (and the ISA lane) builds it."""

    name: str  # the test id, e.g. "qllstm-tokens"
    inputs: str  # "tokens" (int64 ids) or "features" (float vectors)
    build: Callable[[], nn.Module]


@dataclass(frozen=True)
class Family:
    name: str
    module: type
    config_of: Callable[[nn.Module], Dict[str, Any]]
    build: Callable[[Dict[str, Any]], nn.Module]
    recipe_path: Optional[str] = None  # "package.module:Class" of the export recipe
    description: str = ""
    diagnose: Optional[Callable[[nn.Module], List[str]]] = None  # warnings about a model (e.g. unstable maths)
    summary: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None  # `info`'s lines for a config (default: it)
    examples: Tuple[Example, ...] = ()

    def recipe(self):
        if self.recipe_path is None:
            raise NotImplementedError(f"family {self.name!r} ({self.module.__name__}) has no ONNX export recipe")
        mod, _, cls = self.recipe_path.partition(":")
        return getattr(importlib.import_module(mod), cls)()

    @classmethod
    def for_config_class(cls, name: str, module: type, config_class: type, **kw) -> "Family":
        """A module built as ``module(config)`` from a :class:`ModelConfig` dataclass kept as ``.config``."""
        assert issubclass(config_class, ModelConfig)
        return cls(name, module, lambda m: m.config.to_dict(),
                   lambda d: module(config_class.from_dict(d)), **kw)

    @classmethod
    def for_kwargs(cls, name: str, module: type, **kw) -> "Family":
        """A module built as ``module(**config)`` whose ``.config`` property returns those kwargs."""
        params = set(inspect.signature(module.__init__).parameters) - {"self"}

        def build(d: Dict[str, Any]) -> nn.Module:
            unknown = sorted(set(d) - params)
            if unknown:
                raise ConfigError(f"{module.__name__}: unknown config field(s) {unknown}")
            try:
                return module(**d)
            except TypeError as e:
                raise ConfigError(f"{module.__name__}: bad config: {e}") from None

        return cls(name, module, lambda m: dict(m.config), build, **kw)


_FAMILIES: Dict[str, Family] = {}


def register(family: Family) -> Family:
    if family.name in _FAMILIES and _FAMILIES[family.name].module is not family.module:
        raise ValueError(f"family {family.name!r} is already registered for {_FAMILIES[family.name].module}")
    _FAMILIES[family.name] = family
    return family


def families() -> List[Family]:
    return list(_FAMILIES.values())


def examples() -> Dict[str, Example]:
    """Every registered family's examples, by name."""
    return {ex.name: ex for fam in _FAMILIES.values() for ex in fam.examples}


def get_family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(f"unknown model family {name!r}; this toolkit knows {sorted(_FAMILIES)}") from None


def family_of(model: nn.Module) -> Family:
    for fam in _FAMILIES.values():
        if type(model) is fam.module:
            return fam
    for fam in _FAMILIES.values():
        if isinstance(model, fam.module):
            return fam
    raise UnknownFamilyError(f"{type(model).__name__} is not a model family this toolkit knows; "
                             f"supported: {', '.join(f.module.__name__ for f in _FAMILIES.values())}")


from . import families as _families  # noqa: E402,F401  (imports, so registers, every family; after register() exists)
