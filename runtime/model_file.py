"""What the runtime reads from a model file before onnxruntime loads it: the parsed graph, the custom ops it runs,
and its external-data references (refused when they leave the model's folder)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .errors import ModelFileError
from .metadata import DOMAIN

ORT_FORMAT_ID = b"ORTM"  # the flatbuffers file identifier of ORT-format models (bytes 4..8)


def is_ort_format(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8)[4:] == ORT_FORMAT_ID


def parse_model(path: Path):
    """The file's ModelProto without its external data. A file that does not parse is refused here: the runtime's
    checks need the parsed model, and no file goes to onnxruntime unchecked."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors have no common type
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(f"{path}: not a loadable ONNX model (it does not parse: {msg})") from None


def proto_custom_ops(proto) -> set:
    """The ``qlstm_edge`` op types of the custom nodes an ONNX graph runs: its nodes, those of its subgraphs, and
    those nested in the bodies of the local functions it calls."""
    functions = {(f.domain, f.name): f for f in proto.functions}
    found, entered, todo = set(), set(), [proto.graph.node]
    while todo:
        for node in todo.pop():
            key = (node.domain, node.op_type)
            if node.domain == DOMAIN:
                found.add(node.op_type)
            if key in functions and key not in entered:
                entered.add(key)
                todo.append(functions[key].node)
            for a in node.attribute:
                todo.extend(g.node for g in ([a.g] if a.HasField("g") else []) + list(a.graphs))
    return found


def ort_format_custom_ops(path: Path) -> Optional[set]:
    """The ``qlstm_edge`` op types of the custom nodes of an ORT-format file's graph and subgraphs (the format has
    no functions: the converter inlined those it had no kernel for); None when the file does not decode
    (onnxruntime then reports it as not loadable)."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.InferenceSession import InferenceSession

    found = set()
    try:
        graphs = [InferenceSession.GetRootAs(path.read_bytes(), 0).Model().Graph()]
        while graphs:
            g = graphs.pop()
            for i in range(g.NodesLength()):
                node = g.Nodes(i)
                if (node.Domain() or b"").decode() == DOMAIN:
                    found.add(node.OpType().decode())
                for j in range(node.AttributesLength()):
                    a = node.Attributes(j)
                    graphs.extend([a.G()] if a.G() is not None else [])
                    graphs.extend(a.Graphs(k) for k in range(a.GraphsLength()))
    except Exception:  # flatbuffers raises struct, index and decode errors on a damaged file
        return None
    return found


def stored_tensors(proto) -> list:
    """(name, TensorProto) for every tensor a model stores: the dense and sparse (values and indices)
    initializers and the tensor attributes of its graph, their subgraphs at any depth, the local functions'
    bodies and default attributes, and the training graphs."""
    graphs = [proto.graph, *(g for info in proto.training_info for g in (info.initialization, info.algorithm))]
    attrs = []
    for f in proto.functions:
        attrs.extend(f.attribute_proto)
        attrs.extend(a for n in f.node for a in n.attribute)
    tensors = []

    def sparse(items):
        for sp in items:
            tensors.extend([(sp.values.name, sp.values), (sp.values.name or sp.indices.name, sp.indices)])

    while graphs or attrs:
        if graphs:
            g = graphs.pop()
            tensors.extend((t.name, t) for t in g.initializer)
            sparse(g.sparse_initializer)
            attrs.extend(a for n in g.node for a in n.attribute)
            continue
        a = attrs.pop()
        tensors.extend((t.name, t) for t in ([a.t] if a.HasField("t") else []) + list(a.tensors))
        sparse(([a.sparse_tensor] if a.HasField("sparse_tensor") else []) + list(a.sparse_tensors))
        graphs.extend(([a.g] if a.HasField("g") else []) + list(a.graphs))
    return tensors


ORT_MEMORY_TAG = "*/_ORT_MEM_ADDR_/*"  # onnxruntime reads a tensor with this location from a memory address


def check_external_data(path: Path, proto) -> None:
    """Refuse external-data references that leave the model's folder (absolute paths, "..", symlinks), name
    onnxruntime's in-memory tag, or name something other than a regular file."""
    import onnx

    root = path.parent.resolve()
    for name, t in stored_tensors(proto):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in t.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if os.path.isabs(location) or root not in target.parents or location.startswith(ORT_MEMORY_TAG):
            raise ModelFileError(f"{path}: tensor {name!r} points its external data at {location!r}, outside the "
                                 f"model's folder {root}; refusing to read it")
        if target.exists() and not target.is_file():
            raise ModelFileError(f"{path}: tensor {name!r} points its external data at {location!r}, which is not "
                                 f"a regular file; refusing to read it")
