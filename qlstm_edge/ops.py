"""The custom-op table: every ``qlstm_edge`` op declared once, by the family that owns it.

A family declares its ops in ``qlstm_edge/families/<family>/ops.py`` as ``OPS = [OpSpec(...), ...]``; this module
finds those files by walking the families package (nothing lists them) and loads them without importing the family
itself, so the table needs neither PyTorch nor onnx. The exporters build every custom op's function signature from
it, the native library's ``qle_native_info()["contract"]`` is checked against it (tests/native/test_op_contract.py), and
``python -m qlstm_edge.ops`` prints it as the markdown table committed as docs/ops.md.

Quantized nodes keep the regular inputs in place and append one ``<matrix>_scale`` input per matrix input, in the
order of ``matrices``, in the integer modes (exporters/quantize.py has the storage contract).
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

FAMILIES_PACKAGE = "qlstm_edge.families"


def scale_input(matrix: str) -> str:
    """The name of the input a quantized node appends for matrix input ``matrix``."""
    return f"{matrix}_scale"


@dataclass(frozen=True)
class Port:
    """One input or output of an op: its name, its element type in an fp32 node and its symbolic shape."""

    name: str
    dtype: str
    shape: str


@dataclass(frozen=True)
class OpSpec:
    """A custom op's contract.

    ``matrices``: the inputs a quantized node stores quantized (each gets an appended ``<name>_scale`` input in the
    integer modes, in this order); ``host``: the inputs whose values the native kernels read on the host (the CUDA
    kernels take them in host memory); ``x_in_product``: input 0 enters a matrix product (float16 in an fp16 node).
    ``attributes``: the float attributes every node of the op has (beyond the quantized nodes' ``quant_mode`` and
    ``block_size``); ``choices``: its string attributes, each (name, its values), a node without one taking the
    first value (so a node written before the attribute existed keeps its meaning). ``summary`` is the doc string of
    the op's function body.
    """

    name: str
    inputs: Tuple[Port, ...]
    outputs: Tuple[Port, ...]
    summary: str
    matrices: Tuple[str, ...] = ()
    host: Tuple[str, ...] = ()
    x_in_product: bool = False
    attributes: Tuple[str, ...] = ()
    choices: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()

    def __post_init__(self):
        names = [p.name for p in self.inputs]
        unknown = [n for n in (*self.matrices, *self.host) if n not in names]
        if unknown:
            raise ValueError(f"op {self.name}: {unknown} are not among its inputs {names}")

    @property
    def regular_inputs(self) -> List[str]:
        return [p.name for p in self.inputs]

    @property
    def scale_inputs(self) -> List[str]:
        """The inputs an integer-mode node appends: one scale per matrix, in ``matrices`` order."""
        return [scale_input(m) for m in self.matrices]

    def input_names(self, scales: bool) -> List[str]:
        """Every input of a node: the regular ones, then the scales when ``scales`` (the integer modes)."""
        return self.regular_inputs + (self.scale_inputs if scales else [])

    @property
    def output_names(self) -> List[str]:
        return [p.name for p in self.outputs]

    def contract(self) -> dict:
        """The op as the native library's ``qle_native_info()["contract"]`` states it (indices count from 0)."""
        index = {n: i for i, n in enumerate(self.regular_inputs)}
        return {"name": self.name, "inputs": self.input_names(scales=True), "regular": len(self.inputs),
                "input_types": [p.dtype for p in self.inputs], "output_types": [p.dtype for p in self.outputs],
                "matrices": [index[m] for m in self.matrices], "host": [index[h] for h in self.host],
                "x_in_product": self.x_in_product, "attributes": list(self.attributes),
                "choices": [{"name": name, "values": list(values)} for name, values in self.choices]}


def _load(name: str, path: Path):
    """The module ``name`` at ``path``: imported normally when its family package is loaded, else run on its own
    (a family package imports PyTorch; its ops.py imports only this module)."""
    if name in sys.modules or name.rpartition(".")[0] in sys.modules:
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def all_ops() -> Dict[str, OpSpec]:
    """Every family's ops by name, families in package order."""
    package = importlib.util.find_spec(FAMILIES_PACKAGE)
    ops: Dict[str, OpSpec] = {}
    for info in sorted(pkgutil.iter_modules(package.submodule_search_locations), key=lambda m: m.name):
        path = Path(info.module_finder.path) / info.name / "ops.py"
        if not info.ispkg or not path.is_file():
            continue
        for spec in _load(f"{FAMILIES_PACKAGE}.{info.name}.ops", path).OPS:
            if spec.name in ops:
                raise ValueError(f"op {spec.name} is declared twice (families {info.name!r} and another)")
            ops[spec.name] = spec
    return ops


def markdown_table(ops: Dict[str, OpSpec]) -> str:
    """The op table as markdown (docs/ops.md)."""
    def ports(items, marks=lambda p: ""):
        return "<br>".join(f"`{p.name}` {p.dtype} `{p.shape}`{marks(p)}" for p in items)

    lines = ["# Custom ops", "",
             "Generated by `python -m qlstm_edge.ops` from the families' `ops.py` (do not edit by hand).",
             "Types are those of an fp32 node. In the integer modes (int8, int8-dynamic, int4) a node appends one",
             "float32 `<matrix>_scale` input per quantized matrix (marked *matrix*), in the order listed; in fp16 the",
             "matrices are float16 and so is input 0 where it enters a matrix product. Inputs marked *host* are read",
             "on the host by the native kernels. exporters/quantize.py has the storage contract.", "",
             "| op | inputs | outputs | appended in integer modes | input 0 in a product | attributes "
             "| what it computes |",
             "|---|---|---|---|---|---|---|"]
    for op in ops.values():
        def marks(p, op=op):
            tags = [t for t, on in (("matrix", p.name in op.matrices), ("host", p.name in op.host)) if on]
            return f" *{', '.join(tags)}*" if tags else ""
        appended = ", ".join(f"`{s}`" for s in op.scale_inputs) or "none"
        attributes = [f"`{a}` float" for a in op.attributes] + [
            f"`{a}` string: " + ", ".join(f"`{v}`" for v in values) + f" (absent: `{values[0]}`)"
            for a, values in op.choices]
        lines.append(f"| `{op.name}` | {ports(op.inputs, marks)} | {ports(op.outputs)} | {appended} | "
                     f"{'yes' if op.x_in_product else 'no'} | {'<br>'.join(attributes) or 'none'} | {op.summary} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table(all_ops()))
