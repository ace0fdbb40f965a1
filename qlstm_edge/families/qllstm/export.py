"""QL-LSTM export: the custom ops ``qlstm_edge::QLLSTMCell`` / ``QLLSTMSequence`` and the graph recipe.

Op signature (both ops; weights input-major so that u = x @ W_x + h @ W_h + bias needs no Transpose):
    QLLSTMCell    (x[B,D],   h[B,H],  c[B,H],  W_x[D,H], W_h[H,H], bias[H], gate_scale[4,H], gate_bias[4,H], alpha[])
                  -> h'[B,H], c'[B,H]
    QLLSTMSequence(x[B,T,D], h0[B,H], c0[B,H], ...same weights...)
                  -> Y[B,T,H], h_T[B,H], c_T[B,H]
The sequence body computes the input projection of the whole chunk with one MatMul and runs only the
recurrent part per step in a Scan.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
import torch

from ...exporters.graph import FunctionBuilder, GraphBuilder, NodeBuilder, subgraph
from ...exporters.recipe import ExportRecipe, Signature
from .model import QLLSTM, QLLSTMModel

WEIGHTS = ["W_x", "W_h", "bias", "gate_scale", "gate_bias", "alpha"]


def _recurrence(nb: NodeBuilder, xw: str, h: str, c: str) -> Tuple[str, str]:
    """Nodes (into ``nb``) for one step given xw = x @ W_x + bias; returns (h', c'). Weights by name."""
    u = nb.op("Add", [xw, nb.op("MatMul", [h, "W_h"], name="hW")], name="u")  # u = W [x; h] + b
    z = nb.op("Add", [nb.op("Mul", [nb.op("Unsqueeze", [u, nb.ints([1])], name="u4"), "gate_scale"],
                            name="zs"), "gate_bias"], name="z")  # [B,4,H]: z_k = s_k * u + b_k
    zi, zf, zg, zo = (nb.op("Squeeze", [part, nb.ints([1])], name=f"z{k}")
                      for part, k in zip(nb.op("Split", [z], 4, name="split", axis=1), "ifgo"))
    i, f, o = (nb.op("Sigmoid", [zk], name=k) for zk, k in ((zi, "i"), (zf, "f"), (zo, "o")))
    g = nb.op("Tanh", [zg], name="g")
    c_new = nb.op("Add", [nb.op("Mul", [f, c], name="fc"), nb.op("Mul", [i, g], name="ig")], name="c_new")
    h_tilde = nb.op("Mul", [o, nb.op("Tanh", [c_new], name="tanh_c")], name="h_tilde")
    one_minus_f = nb.op("Sub", [nb.const(1.0, f), f], name="one_minus_f")
    h_new = nb.op("Add", [nb.op("Add", [nb.op("Mul", [f, h], name="fh"),
                                         nb.op("Mul", [one_minus_f, h_tilde], name="gated")], name="residual"),
                          nb.op("Mul", ["alpha", h], name="skip")], name="h_new")  # h = f h + (1-f) h~ + a h
    return h_new, c_new


def cell_function(opset: int) -> onnx.FunctionProto:
    fb = FunctionBuilder("QLLSTMCell", ["x", "h", "c", *WEIGHTS], ["h_out", "c_out"],
                         doc="One QL-LSTM step (DESIGN.md, QL-LSTM).")
    xw = fb.op("Add", [fb.op("MatMul", ["x", "W_x"], name="xW"), "bias"], name="xw")
    h_new, c_new = _recurrence(fb, xw, "h", "c")
    fb.op("Identity", [h_new], ["h_out"], name="h_out")
    fb.op("Identity", [c_new], ["c_out"], name="c_out")
    return fb.build(opset)


def sequence_function(opset: int) -> onnx.FunctionProto:
    fb = FunctionBuilder("QLLSTMSequence", ["x", "h0", "c0", *WEIGHTS], ["Y", "h_T", "c_T"],
                         doc="A chunk of QL-LSTM steps: one MatMul for the input projection, then a Scan.")
    xw = fb.op("Add", [fb.op("MatMul", ["x", "W_x"], name="xW"), "bias"], name="xw")  # [B,T,H]
    xw_t = fb.op("Transpose", [xw], name="xw_time_major", perm=[1, 0, 2])
    body = NodeBuilder(prefix="step.")
    h_new, c_new = _recurrence(body, "xw_t", "h_prev", "c_prev")
    body.op("Identity", [h_new], ["y_t"], name="y_t")
    graph = subgraph("qllstm_step", body, ["h_prev", "c_prev", "xw_t"], [h_new, c_new, "y_t"])
    fb.op("Scan", ["h0", "c0", xw_t], ["h_T", "c_T", "Y_time_major"], name="recurrence", body=graph,
          num_scan_inputs=1)
    fb.op("Transpose", ["Y_time_major"], ["Y"], name="Y", perm=[1, 0, 2])
    return fb.build(opset)


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def layer_weights(cell) -> Dict[str, np.ndarray]:
    """The cell's parameters in the op's layout: W = [W_x | W_h] split and transposed to input-major."""
    w = _f32(cell.weight)
    d = cell.input_size
    return {"W_x": w[:, :d].T, "W_h": w[:, d:].T,
            "bias": _f32(cell.bias), "gate_scale": _f32(cell.gate_scale), "gate_bias": _f32(cell.gate_bias),
            "alpha": _f32(cell.alpha)}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class QLLSTMStackRecipe(ExportRecipe):
    """A bare ``QLLSTM`` stack: features in, the last layer's h out."""

    def stack(self, model) -> QLLSTM:
        return model

    def build(self, model, g: GraphBuilder, mode: str, opset: int) -> Signature:
        stack = self.stack(model)
        x_spec, y_spec = self.input_spec(model, g, mode)
        states = [self.state_io(g, f"l{l}.{s}", [stack.hidden_size])
                  for l in range(stack.num_layers) for s in ("h", "c")]
        e = self.embed(model, g, x_spec.name)
        op, fn = (("QLLSTMCell", cell_function(opset)) if mode == "step"
                  else ("QLLSTMSequence", sequence_function(opset)))
        for l, cell in enumerate(stack.cells):
            h_in, c_in, h_out, c_out = states[2 * l].input, states[2 * l + 1].input, states[2 * l].output, \
                states[2 * l + 1].output
            weights = [g.weight(f"l{l}.{k}", v) for k, v in layer_weights(cell).items()]
            outs = [h_out, c_out] if mode == "step" else [g.fresh(f"l{l}.y"), h_out, c_out]
            e = g.custom(op, [e, h_in, c_in, *weights], outs, name=f"l{l}.{op}", function=fn)[0]
        self.head(model, g, e, y_spec.name)
        g.output(y_spec.name, y_spec.dtype, y_spec.shape)
        for s in states:
            g.output(s.output, s.dtype, s.shape)
        return Signature([x_spec], [y_spec], states)

    def input_spec(self, model, g, mode):
        return self.data_io(g, mode, [model.input_size], "float32", [model.hidden_size])

    def embed(self, model, g: GraphBuilder, x: str) -> str:
        return x

    def head(self, model, g: GraphBuilder, h: str, y: str) -> None:
        g.op("Identity", [h], [y], name="y")

    def run_torch(self, model, x, state):
        return model(x, state)

    def reference(self, model, x, state: Optional[Dict[str, np.ndarray]]):
        stack = self.stack(model)
        if state is not None:
            L = stack.num_layers
            state = tuple(torch.from_numpy(np.stack([state[f"l{l}.{s}"] for l in range(L)])) for s in ("h", "c"))
        with torch.no_grad():
            y, (h, c) = self.run_torch(model, x, state)
        out = {}
        for l in range(stack.num_layers):
            out[f"l{l}.h"], out[f"l{l}.c"] = _np(h[l]), _np(c[l])
        return _np(y), out

    def validate(self, model, mode):
        if not self.stack(model).batch_first:
            raise ValueError("export needs a batch_first QLLSTM (the exported graph is batch-major)")


class QLLSTMModelRecipe(QLLSTMStackRecipe):
    """``QLLSTMModel``: embedding (token ids) or linear input map -> stack -> per-step head."""

    def stack(self, model: QLLSTMModel) -> QLLSTM:
        return model.rnn

    def input_spec(self, model: QLLSTMModel, g, mode):
        cfg = model.config
        if cfg.vocab_size is not None:
            return self.data_io(g, mode, [], "int64", [cfg.output_size], in_range=[0, cfg.vocab_size])
        return self.data_io(g, mode, [cfg.input_size], "float32", [cfg.output_size])

    def embed(self, model: QLLSTMModel, g: GraphBuilder, x: str) -> str:
        if model.config.vocab_size is not None:
            table = g.weight("embedding.weight", _f32(model.embedding.weight))
            return g.op("Gather", [table, x], name="embedding", axis=0)
        w = g.weight("input_map.weight_t", _f32(model.input_map.weight).T)
        b = g.weight("input_map.bias", _f32(model.input_map.bias))
        return g.op("Add", [g.op("MatMul", [x, w], name="input_map.MatMul"), b], name="input_map")

    def head(self, model: QLLSTMModel, g: GraphBuilder, h: str, y: str) -> None:
        w = g.weight("head.weight_t", _f32(model.head.weight).T)
        b = g.weight("head.bias", _f32(model.head.bias))
        g.op("Add", [g.op("MatMul", [h, w], name="head.MatMul"), b], [y], name="head")
