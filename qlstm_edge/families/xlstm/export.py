"""xLSTM export recipes: ``xlstm.xLSTMBlockStack``, ``xlstm.xLSTMLMModel`` and ``xlstm.xlstm_large.model.xLSTMLarge``.

Block stacks and LMs: one mLSTMBlock node per mLSTM block and one sLSTMBlock node per sLSTM block and its FFN, whose
bodies are standard ops around the nested cell op (block_ops.py); the forms blocks.mlstm_block and
blocks.slstm_ffn_block name (fp16 among them) keep one cell-op node (cells.py) with everything else (norms, causal
conv1d with its state, head-wise and dense projections, FFN) made of standard ops (layers.py, blocks.py).
xLSTMLarge: one xLSTMLargeBlock node per block, whose body is standard ops around the nested mLSTM cell op
(block_ops.py). Embeddings, soft-capped logits and LM heads are standard ops. The maths is the package's own (xlstm
2.0.4+, CPU backends; DESIGN.md, section xLSTM). The state tensors keep the package's layouts (model.py:
StackStates, LargeStates).
"""
from __future__ import annotations

import onnx
import torch
import xlstm
from xlstm.blocks.mlstm.layer import mLSTMLayer

from ...exporters.graph import GraphBuilder
from ...exporters.quantize import MODES as QUANT_MODES
from ...exporters.recipe import ExportRecipe, Signature, f32
from .blocks import ffn, large_block, mlstm_block, slstm_ffn_block
from .cells import (SLSTM_MATRICES, mlstm_cell_function, mlstm_sequence_function,  # noqa: F401  (the ops' bodies)
                    slstm_cell_function, slstm_sequence_function)
from .layers import Net
from .model import LargeStates, StackStates, _check_stack_config, block_stack, run_large_steps, run_stack_steps


# Parity tolerances of quantized exports (max abs error of outputs and final states, as qlstm_edge.parity
# TOLERANCES) for these families: about 3x the worst measured on random models (the test suite's
# perturbed package models: 7 block stacks / LMs, E 64-256, and 2 xLSTMLarge, E 64-128) over 10,000 steps.
# The defaults are calibrated on QL-LSTM, whose outputs are about 0.3; xLSTM outputs are normed features or
# logits (max about 5), the sLSTM normaliser n grows to about 140 and carries the largest absolute state error,
# and random xLSTMLarge models are badly conditioned (their own float32 rounding moves the logits by up to 1e-4,
# 300x QL-LSTM's). Measured worst (outputs / any tensor): stacks and LMs fp16 1.2e-2 / 3.3e-2, int8 0.20 / 0.73,
# int8-dynamic 0.37 / 1.7, int4 3.1 / 13; xLSTMLarge fp16 0.25, int8 1.4, int8-dynamic 1.5, int4 6.1 / 6.6.
# Bounds this loose catch a broken export, not accuracy loss: the exactness check is the test that an int8
# export equals the PyTorch model with dequantized weights; judge quality with `quantize-report --eval`.
STACK_QUANT_TOLERANCES = {"fp16": 0.1, "int8": 2.0, "int8-dynamic": 5.0, "int4": 40.0}
LARGE_QUANT_TOLERANCES = {"fp16": 0.75, "int8": 4.0, "int8-dynamic": 4.5, "int4": 20.0}


class XLSTMStackRecipe(ExportRecipe):
    """``xlstm.xLSTMBlockStack``: features [B, (T,) E] in, the post-blocks-normed features out."""

    quantization_modes = QUANT_MODES
    quantization_tolerances = STACK_QUANT_TOLERANCES

    def build(self, model, g: GraphBuilder, mode: str, opset: int) -> Signature:
        stack = block_stack(model)
        layout = StackStates(stack)
        x_spec, y_spec = self.input_spec(model, g, mode)
        y_spec.dtype = g.quant.io_dtype
        specs = {name: self.state_io(g, name, shape) for name, shape in layout.shapes.items()}
        g.quant.keep_float32_states([s.name for s in specs.values()])
        net = Net(g, mode, opset)
        h = self.embed(model, net, x_spec.name)
        kinds = []
        for i, block in enumerate(stack.blocks):
            block_states = {name.split(".", 1)[1]: spec for name, spec in specs.items() if name.startswith(f"b{i}.")}
            if isinstance(block.xlstm, mLSTMLayer):
                h = ffn(net, block, i, mlstm_block(net, block, i, h, block_states))
                kinds.append("mlstm")
            else:
                h = slstm_ffn_block(net, block, i, h, block_states)  # the block and its FFN
                kinds.append("slstm")
        if not isinstance(stack.post_blocks_norm, torch.nn.Identity):
            h = net.layer_norm(h, stack.post_blocks_norm, "post_blocks_norm")
        self.head(model, net, h, y_spec.name)
        g.output(y_spec.name, y_spec.dtype, y_spec.shape)
        for s in specs.values():
            g.output(s.output, s.dtype, s.shape)
        return Signature([x_spec], [y_spec], list(specs.values()),
                         extra={"package": "xlstm", "package_version": xlstm.__version__, "blocks": kinds})

    def input_spec(self, model, g, mode):
        e = model.config.embedding_dim
        return self.data_io(g, mode, [e], g.quant.io_dtype, [e])

    def embed(self, model, net: Net, x: str) -> str:
        """The block input, float32 (a float16 data input is cast)."""
        return x if net.q.io_dtype == "float32" else net.g.op("Cast", [x], name="x_fp32", to=onnx.TensorProto.FLOAT)

    def head(self, model, net: Net, h: str, y: str) -> None:
        net.q.to_io(net.g, h, y, compute=False)

    def reference(self, model, x, state):
        return run_stack_steps(model, x, state)

    def validate(self, model, mode):
        _check_stack_config(model.config)


class XLSTMLMRecipe(XLSTMStackRecipe):
    """``xlstm.xLSTMLMModel``: token ids in, logits out (embedding -> block stack -> LM head)."""

    def input_spec(self, model, g, mode):
        v = model.config.vocab_size
        return self.data_io(g, mode, [], "int64", [v], in_range=[0, v])

    def embed(self, model, net: Net, x: str) -> str:
        q = net.q
        return q.to_float32(net.g, q.embedding(net.g, "token_embedding", f32(model.token_embedding.weight), x))

    def head(self, model, net: Net, h: str, y: str) -> None:
        q = net.q
        direct = q.compute_dtype == q.io_dtype
        logits = net.lm_head(h, model.lm_head.weight, out=y if direct else None)
        if not direct:
            q.to_io(net.g, logits, y)


class XLSTMLargeRecipe(ExportRecipe):
    """``xlstm.xlstm_large.model.xLSTMLarge``: token ids in, soft-capped logits out."""

    quantization_modes = QUANT_MODES
    quantization_tolerances = LARGE_QUANT_TOLERANCES

    def build(self, model, g: GraphBuilder, mode: str, opset: int) -> Signature:
        config = model.config
        v = config.vocab_size
        q = g.quant
        x_spec, y_spec = self.data_io(g, mode, [], "int64", [v], in_range=[0, v])
        y_spec.dtype = q.io_dtype
        specs = {name: self.state_io(g, name, shape) for name, shape in LargeStates(model).shapes.items()}
        q.keep_float32_states([s.name for s in specs.values()])
        net = Net(g, mode, opset)
        h = q.to_float32(g, q.embedding(g, "embedding", f32(model.embedding.weight), x_spec.name))
        for i, block in enumerate(model.backbone.blocks):
            block_states = {s: specs[f"b{i}.{s}"] for s in "Cnm"}
            h = large_block(net, block, i, h, block_states, config)
        if config.add_out_norm:
            h = net.rms_norm(h, model.backbone.out_norm, "out_norm")
        logits = q.to_float32(g, net.lm_head(h, model.lm_head.weight))
        q.to_io(g, net.soft_cap(logits, config.output_logit_soft_cap, "logit_cap"), y_spec.name, compute=False)
        g.output(y_spec.name, y_spec.dtype, y_spec.shape)
        for s in specs.values():
            g.output(s.output, s.dtype, s.shape)
        return Signature([x_spec], [y_spec], list(specs.values()),
                         extra={"package": "xlstm", "package_version": xlstm.__version__,
                                "blocks": ["mlstm"] * config.num_blocks})

    def reference(self, model, x, state):
        return run_large_steps(model, x, state)
