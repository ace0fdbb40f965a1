"""Model families. Each is one subpackage (PyTorch module, config, export recipe); importing it registers it.

Every subpackage found here is imported, in name order, so a new family is a new folder and nothing else.
"""
import importlib
import pkgutil


def _import_all() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.ispkg:
            importlib.import_module(f"{__name__}.{info.name}")


_import_all()
