"""QL-LSTM export: the custom ops ``qlstm_edge::QLLSTMCell`` / ``QLLSTMSequence`` and the graph recipe.

The ops' signatures are in ops.py (docs/ops.md). Weights are input-major, so that u = x @ W_x + h @ W_h + bias
needs no Transpose. The sequence body computes the input projection of the whole chunk with one MatMul and runs
only the recurrent part per step in a Scan.

Quantized weights (exporters/quantize.py has the full contract; input positions never move):
    fp32          every input float32, no attributes.
    fp16          W_x, W_h float16 and x float16; h, c, bias, gate_scale, gate_bias, alpha and all outputs
                  float32. The products x @ W_x and h @ W_h run in float16 (h is cast); u and everything after it
                  (gates, c and h updates) run in float32.
    int8,         W_x, W_h int8 [D,H] / [H,H], symmetric per output channel; appended inputs 9 and 10:
    int8-dynamic  W_x_scale[H], W_h_scale[H] float32 (W ~= W_q * scale). int8-dynamic quantizes x and h per row
                  and step and multiplies with MatMulInteger.
    int4          W_x, W_h int4 packed two per byte: uint8 [D, ceil(H/2)] / [H, ceil(H/2)]; appended
                  W_x_scale[ceil(D/bs), H], W_h_scale[ceil(H/bs), H] float32, blocks of bs = block_size rows
                  along the input axis.
    Quantized nodes carry attributes quant_mode (string) and block_size (int, 0 unless int4).
Both recurrent states stay float32 in every mode. c is the cell's long-term memory (c = f c + i g), and
in QL-LSTM h is a leaky integrator too (h = f h + (1-f) h~ + alpha h): with f near 1 the per-step
increments (1-f)(h~ - h) fall below half a float16 ulp of h (|h| * 2^-11) and would be rounded away, so a
float16 h or c stalls or drifts over a long stream. The gate pre-activations are float32 for the same
reason: 1 - f needs float32 resolution when f saturates.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import onnx
import torch

from ...exporters.graph import FunctionBuilder, GraphBuilder, NodeBuilder, op_function, subgraph
from ...exporters.quantize import MODES as QUANT_MODES, Quantizer
from ...exporters.recipe import CoreIO, ExportRecipe, SequenceModelIO, Signature, f32
from ...ops import scale_input
from .model import QLLSTM, QLLSTMModel
from .ops import CELL, SEQUENCE

MATRICES = list(CELL.matrices)  # quantized inputs; their scales are appended in this order


def _recurrence(nb: NodeBuilder, q: Quantizer, opset: int, xw: str, h: str, c: str, w_h: str) -> Tuple[str, str]:
    """Nodes (into ``nb``) for one step given xw = x @ W_x + bias; returns (h', c'). Weights by name;
    ``w_h`` is W_h as ``q.body_weight`` prepared it."""
    hw = q.body_matmul(nb, h, w_h, scale_input("W_h") if q.integer else None, opset, name="hW")
    u = nb.op("Add", [xw, hw], name="u")  # u = W [x; h] + b
    z = nb.op("Add", [nb.op("Mul", [nb.op("Unsqueeze", [u, nb.ints([1])], name="u4"), "gate_scale"],
                            name="zs"), "gate_bias"], name="z")  # [B,4,H]: z_k = s_k * u + b_k
    zi, zf, zg, zo = (nb.op("Squeeze", [part, nb.ints([1])], name=f"z{k}")
                      for part, k in zip(nb.split_equal(z, 4, 1, opset, "split"), "ifgo"))
    i, f, o = (nb.op("Sigmoid", [zk], name=k) for zk, k in ((zi, "i"), (zf, "f"), (zo, "o")))
    g = nb.op("Tanh", [zg], name="g")
    c_new = nb.op("Add", [nb.op("Mul", [f, c], name="fc"), nb.op("Mul", [i, g], name="ig")], name="c_new")
    h_tilde = nb.op("Mul", [o, nb.op("Tanh", [c_new], name="tanh_c")], name="h_tilde")
    one_minus_f = nb.op("Sub", [nb.const(1.0, f), f], name="one_minus_f")
    h_new = nb.op("Add", [nb.op("Add", [nb.op("Mul", [f, h], name="fh"),
                                         nb.op("Mul", [one_minus_f, h_tilde], name="gated")], name="residual"),
                          nb.op("Mul", ["alpha", h], name="skip")], name="h_new")  # h = f h + (1-f) h~ + a h
    return h_new, c_new


def _input_projection(fb: FunctionBuilder, q: Quantizer, opset: int) -> Tuple[str, str]:
    """(xw = x @ W_x + bias, W_h prepared for the recurrence), in the function's scope."""
    scales = dict(zip(MATRICES, q.scale_inputs(MATRICES)))
    w_x, w_h = (q.body_weight(fb, m, scales.get(m)) for m in MATRICES)
    xw = fb.op("Add", [q.body_matmul(fb, "x", w_x, scales.get("W_x"), opset, name="xW", x_is_compute=True), "bias"],
               name="xw")
    return xw, w_h


def cell_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    q = q or Quantizer()
    fb = op_function(CELL, q)
    xw, w_h = _input_projection(fb, q, opset)
    h_new, c_new = _recurrence(fb, q, opset, xw, "h", "c", w_h)
    fb.op("Identity", [h_new], ["h_out"], name="h_out")
    fb.op("Identity", [c_new], ["c_out"], name="c_out")
    return q.declare_attributes(fb.build(opset))


def sequence_function(opset: int, q: Optional[Quantizer] = None) -> onnx.FunctionProto:
    q = q or Quantizer()
    fb = op_function(SEQUENCE, q)
    xw, w_h = _input_projection(fb, q, opset)  # xw [B,T,H]
    xw_t = fb.op("Transpose", [xw], name="xw_time_major", perm=[1, 0, 2])
    body = NodeBuilder(prefix="step.")
    h_new, c_new = _recurrence(body, q, opset, "xw_t", "h_prev", "c_prev", w_h)
    body.op("Identity", [h_new], ["y_t"], name="y_t")
    graph = subgraph("qllstm_step", body, ["h_prev", "c_prev", "xw_t"], [h_new, c_new, "y_t"])
    fb.op("Scan", ["h0", "c0", xw_t], ["h_T", "c_T", "Y_time_major"], name="recurrence", body=graph,
          num_scan_inputs=1)
    fb.op("Transpose", ["Y_time_major"], ["Y"], name="Y", perm=[1, 0, 2])
    return q.declare_attributes(fb.build(opset))


def layer_weights(cell) -> Dict[str, np.ndarray]:
    """The cell's parameters in the op's layout: W = [W_x | W_h] split and transposed to input-major."""
    w = f32(cell.weight)
    d = cell.input_size
    return {"W_x": w[:, :d].T, "W_h": w[:, d:].T,
            "bias": f32(cell.bias), "gate_scale": f32(cell.gate_scale), "gate_bias": f32(cell.gate_bias),
            "alpha": f32(cell.alpha)}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class QLLSTMStackRecipe(CoreIO, ExportRecipe):
    """A bare ``QLLSTM`` stack: features in, the last layer's h out."""

    quantization_modes = QUANT_MODES

    def stack(self, model) -> QLLSTM:
        return model

    def build(self, model, g: GraphBuilder, mode: str, opset: int) -> Signature:
        q = g.quant
        stack = self.stack(model)
        x_spec, y_spec = self.input_spec(model, g, mode)
        y_spec.dtype = q.io_dtype
        states = [self.state_io(g, f"l{l}.{s}", [stack.hidden_size])
                  for l in range(stack.num_layers) for s in ("h", "c")]
        q.keep_float32_states([s.name for s in states])
        e = self.embed(model, g, x_spec.name, opset)  # the compute dtype
        op, fn = ((CELL.name, cell_function(opset, q)) if mode == "step"
                  else (SEQUENCE.name, sequence_function(opset, q)))
        for l, cell in enumerate(stack.cells):
            h_in, c_in, h_out, c_out = states[2 * l].input, states[2 * l + 1].input, states[2 * l].output, \
                states[2 * l + 1].output
            weights = q.op_weights(g, f"l{l}.", layer_weights(cell), MATRICES)
            outs = [h_out, c_out] if mode == "step" else [g.fresh(f"l{l}.y"), h_out, c_out]
            x_l = e if l == 0 else q.to_compute(g, e)  # a layer's output h is float32
            e = g.custom(op, [x_l, h_in, c_in, *weights], outs, name=f"l{l}.{op}", function=fn,
                         **q.op_attributes())[0]
        self.head(model, g, e, y_spec.name, opset)
        g.output(y_spec.name, y_spec.dtype, y_spec.shape)
        for s in states:
            g.output(s.output, s.dtype, s.shape)
        return Signature([x_spec], [y_spec], states)

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


class QLLSTMModelRecipe(SequenceModelIO, QLLSTMStackRecipe):
    """``QLLSTMModel``: embedding (token ids) or linear input map -> stack -> per-step head."""

    def stack(self, model: QLLSTMModel) -> QLLSTM:
        return model.rnn
