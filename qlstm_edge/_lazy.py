"""Package attributes that load on first use (PEP 562), so importing a package does not import PyTorch."""
import importlib
from typing import Callable, Dict, List, Tuple


def lazy_attributes(package: str, namespace: dict, sources: Dict[str, Tuple[str, str]],
                    public: List[str]) -> Tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``: attribute ``name`` is ``sources[name] = (module, attr)``
    (module relative to the package), imported on first use and kept in ``namespace`` (the package's globals)."""

    def __getattr__(name: str):
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = sources[name]
        value = getattr(importlib.import_module(module, package), attr)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__
