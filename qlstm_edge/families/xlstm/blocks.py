"""The blocks of the xlstm package's models as graph pieces: the mLSTM block of ``xLSTMBlockStack``, one block-op
node (block_ops.py; in fp16 and int8-dynamic one cell-op node and its standard-op layers, layers.py); its sLSTM block
with its FFN, one block-op node (the forms ``slstm_ffn_block`` lists: one cell-op node and its layers); and the block
of ``xLSTMLarge``, one block-op node (in fp16 one cell-op node and its layers).
"""
from __future__ import annotations

import numpy as np
import torch

from ...exporters.recipe import f32
from .layers import Net
from .ops import (FFN_ACT, LARGE_BLOCK, LARGE_BLOCK_MATRICES, LARGE_BLOCK_SEQUENCE, MLSTM_BLOCK, MLSTM_BLOCK_MATRICES,
                  MLSTM_BLOCK_SEQUENCE, MLSTM_CELL, MLSTM_SEQUENCE, NORM_EPS, SLSTM_BLOCK, SLSTM_BLOCK_MATRICES,
                  SLSTM_BLOCK_SEQUENCE, SLSTM_CELL, SLSTM_SEQUENCE)

STACK_EPS_MLSTM = 1e-6  # xlstm.blocks.mlstm.backends.recurrent_step_stabilized_simple's eps


def mlstm_block(net: Net, block, i: int, x: str, states) -> str:
    """One mLSTMBlock (or mLSTMBlockSequence) node: the whole block, its body in block_ops.py, the conv window and
    the package's C, n, m its state. fp16, int8-dynamic (mlstm_block_cells says why) and norms of different
    epsilons (the op takes one) keep the cell-op layout."""
    g, layer, p = net.g, block.xlstm, f"b{i}"
    cell, cfg = layer.mlstm_cell, layer.config
    norm, on = block.xlstm_norm, cell.outnorm
    if net.q.compute_dtype == "float16" or net.q.dynamic or norm.eps != on.eps:
        return mlstm_block_cells(net, block, i, x, states)
    qkv = [layer.q_proj, layer.k_proj, layer.v_proj]
    gates = [cell.igate, cell.fgate]
    weights = {"norm_weight": _layer_norm_weight(norm), "norm_bias": _layer_norm_bias(norm),
               "W_up": f32(layer.proj_up.weight).T, "b_up": _bias(layer.proj_up),
               "conv_weight": f32(layer.conv1d.conv.weight[:, 0, :]).T, "conv_bias": _bias(layer.conv1d.conv),
               "W_qkv": np.stack([f32(m.weight) for m in qkv]).transpose(0, 1, 3, 2),  # [3, NP, BS in, BS out]
               "b_qkv": np.concatenate([_headwise_bias(m) for m in qkv]),
               "W_if": f32(torch.cat([m.weight for m in gates])).T, "b_if": _cat_bias(gates),
               "head_norm_weight": _layer_norm_weight(on), "head_norm_bias": _layer_norm_bias(on),
               "skip": f32(layer.learnable_skip),
               "W_down": f32(layer.proj_down.weight).T, "b_down": _bias(layer.proj_down)}
    stored = net.q.op_weights(g, f"{p}.", weights, MLSTM_BLOCK_MATRICES)
    scalars = [net.scalar(f"{p}.k_scale", (cfg._inner_embedding_dim // cfg.num_heads) ** -0.5),
               net.scalar(f"{p}.eps", STACK_EPS_MLSTM)]
    op = MLSTM_BLOCK_SEQUENCE if net.seq else MLSTM_BLOCK
    net.function(MLSTM_SEQUENCE.name if net.seq else MLSTM_CELL.name)  # the body's nested cell op
    y = g.fresh(f"{p}.y")
    names = ("conv", "C", "n", "m")
    g.custom(op.name, [x, *(states[s].input for s in names), *stored[:len(weights)], *scalars,
                       *stored[len(weights):]], [y, *(states[s].output for s in names)], name=f"{p}.{op.name}",
             function=net.function(op.name), **{NORM_EPS: float(norm.eps)}, **net.q.op_attributes())
    return y


def mlstm_block_cells(net: Net, block, i: int, x: str, states) -> str:
    """The LM's mLSTM block as one mLSTM cell-op node and standard-op layers: the fp16 and int8-dynamic form. The
    block op's kernel computes the norms and SiLUs that feed the block's products itself, within a float32 rounding
    of onnxruntime's but not bit for bit: fp16 rounds those inputs to float16, and int8-dynamic quantizes them per
    row, so a value at a rounding boundary moves one float16 or int8 step, and a long int8-dynamic stream carries
    such a step on (a 300-token LM stream left its function body by 9x the native-vs-body tolerance,
    tests/native/test_prlstm_xlstm_kernels.py test_quantized_models_stream_natively). These files keep
    onnxruntime's ops for them."""
    g, layer = net.g, block.xlstm
    cell, cfg = layer.mlstm_cell, layer.config
    inner, nh = cfg._inner_embedding_dim, cfg.num_heads
    dh = inner // nh
    p = f"b{i}"
    xn = net.layer_norm(x, block.xlstm_norm, f"{p}.norm")
    x_m, z = net.split(net.linear(xn, layer.proj_up.weight, layer.proj_up.bias, f"{p}.proj_up"), [inner, inner],
                       f"{p}.split")
    x_c = net.silu(net.causal_conv(x_m, layer.conv1d.conv, states["conv"].input, states["conv"].output,
                                   f"{p}.conv"), f"{p}.conv_act")
    gate_in = net.headwise([(x_c, layer.q_proj), (x_c, layer.k_proj), (x_m, layer.v_proj)], f"{p}.qkv")  # [q, k, v]
    w_if = torch.cat([cell.igate.weight, cell.fgate.weight])  # one product for both gates (columns independent)
    b_if = None if cell.igate.bias is None else torch.cat([cell.igate.bias, cell.fgate.bias])
    i_pre, f_pre = net.split(net.linear(gate_in, w_if, b_if, f"{p}.ifgate"), [nh, nh], f"{p}.if_split")
    n_in = g.op("Squeeze", [states["n"].input, g.ints([3])], name=f"{p}.n_in")  # package: [B, NH, DH, 1]
    m_in = g.op("Squeeze", [states["m"].input, g.ints([3])], name=f"{p}.m_in")  # package: [B, NH, 1, 1]
    consts = [net.scalar(f"{p}.q_scale", 1.0), net.scalar(f"{p}.k_scale", dh ** -0.5),
              net.scalar(f"{p}.eps", STACK_EPS_MLSTM)]
    op = (MLSTM_SEQUENCE if net.seq else MLSTM_CELL).name
    qkv_heads = net.to_heads(gate_in, 3 * nh, dh, f"{p}.qkv_heads")  # [..., 3 NH, DH]: q's heads, k's, v's
    heads = g.op("Split", [qkv_heads, g.ints([nh] * 3)], 3, name=f"{p}.qkv_split", axis=-2)
    h, n_out, m_out = g.fresh(f"{p}.h"), g.fresh(f"{p}.n_cell"), g.fresh(f"{p}.m_cell")
    g.custom(op, [*heads, i_pre, f_pre, states["C"].input, n_in, m_in, *consts],
             [h, states["C"].output, n_out, m_out], name=f"{p}.{op}", function=net.function(op))
    g.op("Unsqueeze", [n_out, g.ints([3])], [states["n"].output], name=f"{p}.n_out")
    g.op("Unsqueeze", [m_out, g.ints([3])], [states["m"].output], name=f"{p}.m_out")
    on = cell.outnorm
    h_norm = net.head_norm(h, dh, None if on.weight_proxy is None else f32(on.weight_proxy),
                           None if on.bias is None else f32(on.bias), on.eps, f"{p}.outnorm")
    skip = g.op("Mul", [net.param(f"{p}.learnable_skip", f32(layer.learnable_skip)), x_c], name=f"{p}.skip")
    h_skip = g.op("Add", [h_norm, skip], name=f"{p}.h_skip")
    h_state = g.op("Mul", [h_skip, net.silu(z, f"{p}.z_act")], name=f"{p}.h_gated")
    y = net.linear(h_state, layer.proj_down.weight, layer.proj_down.bias, f"{p}.proj_down")
    return g.op("Add", [x, y], name=f"{p}.residual")


def slstm_ffn_block(net: Net, block, i: int, x: str, states) -> str:
    """The sLSTM block and its FFN as one sLSTMBlock (or sLSTMBlockSequence) node, its FFN activation the node's
    ffn_act. These forms keep one sLSTM cell-op node and standard-op layers (``slstm_block`` then ``ffn``): fp16 (as
    ``large_block_cells`` says; the block kernel's fp16 streams of the tests' block stack differ from the body's by
    4e-4 relative, over the 1e-4 that test_native_auto_runs_quantized_exports_correctly allows), no conv
    (conv1d_kernel_size 0), no FFN, norms of different epsilons, and an FFN activation other than the one the
    model's sLSTM block op body was built for (the package's configs give every sLSTM block the same one)."""
    layer, ffn_ = block.xlstm, block.ffn
    eps = {block.xlstm_norm.eps, layer.group_norm.eps, *([] if ffn_ is None else [block.ffn_norm.eps])}
    if (net.q.compute_dtype == "float16" or layer.config.conv1d_kernel_size == 0 or ffn_ is None or len(eps) > 1
            or net.ffn_act not in (None, ffn_.config.act_fn)):
        return ffn(net, block, i, slstm_block(net, block, i, x, states))
    net.ffn_act = ffn_.config.act_fn
    g, cell, p = net.g, layer.slstm_cell, f"b{i}"
    gates = [layer.fgate, layer.igate, layer.zgate, layer.ogate]  # the package's i/f swap, as slstm_block
    w_gates = np.stack([f32(m.weight) for m in gates]).transpose(0, 1, 3, 2)  # [4, NH, DH_in, DH_out]
    r = f32(cell._recurrent_kernel_int2ext(cell._recurrent_kernel).permute(2, 0, 1, 3))
    b = f32(cell._bias_int2ext(cell._bias).permute(1, 0, 2).reshape(-1))
    weights = {"norm_weight": _layer_norm_weight(block.xlstm_norm), "norm_bias": _layer_norm_bias(block.xlstm_norm),
               "conv_weight": f32(layer.conv1d.conv.weight[:, 0, :]).T, "conv_bias": _bias(layer.conv1d.conv),
               "W_gates": w_gates, "b_gates": np.concatenate([_headwise_bias(m) for m in gates]), "R": r, "b": b,
               "group_norm_weight": _layer_norm_weight(layer.group_norm),
               "group_norm_bias": _layer_norm_bias(layer.group_norm),
               "ffn_norm_weight": _layer_norm_weight(block.ffn_norm), "ffn_norm_bias": _layer_norm_bias(block.ffn_norm),
               "W_up": f32(ffn_.proj_up.weight).T, "b_up": _bias(ffn_.proj_up),
               "W_down": f32(ffn_.proj_down.weight).T, "b_down": _bias(ffn_.proj_down)}
    stored = net.q.op_weights(g, f"{p}.", weights, SLSTM_BLOCK_MATRICES)  # W_gates, R stacked
    op = SLSTM_BLOCK_SEQUENCE if net.seq else SLSTM_BLOCK
    net.function(SLSTM_SEQUENCE.name if net.seq else SLSTM_CELL.name)  # the body's nested cell op
    names = ["conv", *"ycnm"]
    h = g.fresh(f"{p}.h")
    g.custom(op.name, [x, *(states[s].input for s in names), *stored],
             [h, *(states[s].output for s in names)], name=f"{p}.{op.name}", function=net.function(op.name),
             **{NORM_EPS: float(eps.pop()), FFN_ACT: net.ffn_act}, **net.q.op_attributes())
    return h


def slstm_block(net: Net, block, i: int, x: str, states) -> str:
    """The sLSTM block alone as one sLSTM cell-op node and standard-op layers (``slstm_ffn_block``'s other forms)."""
    g, layer = net.g, block.xlstm
    cell, cfg = layer.slstm_cell, layer.config
    nh, hidden = cfg.num_heads, cfg.embedding_dim
    dh = hidden // nh
    p = f"b{i}"
    xn = net.layer_norm(x, block.xlstm_norm, f"{p}.norm")
    x_c = xn
    if cfg.conv1d_kernel_size > 0:
        x_c = net.silu(net.causal_conv(xn, layer.conv1d.conv, states["conv"].input, states["conv"].output,
                                       f"{p}.conv"), f"{p}.conv_act")
    # the package's sLSTMLayer feeds fgate's projection to the cell's i slot and igate's to f; kept as is
    wx = net.headwise([(x_c, layer.fgate), (x_c, layer.igate), (xn, layer.zgate), (xn, layer.ogate)],
                      f"{p}.gates_x")  # [i, f, z, o] pre-activations, gate-major
    r_ext = cell._recurrent_kernel_int2ext(cell._recurrent_kernel)  # [NH, DH_in, 4, DH_out]
    b_ext = cell._bias_int2ext(cell._bias)  # [NH, 4, DH]
    r, r_scale = net.q.store_stacked(g, f"{p}.R", f32(r_ext.permute(2, 0, 1, 3)))
    weights = [r, net.param(f"{p}.b", f32(b_ext.permute(1, 0, 2).reshape(-1))), *([r_scale] if r_scale else [])]
    op = (SLSTM_SEQUENCE if net.seq else SLSTM_CELL).name
    ins = [states[k].input for k in "ycnm"]
    outs = [states[k].output for k in "ycnm"]
    if net.seq:
        y_all = g.fresh(f"{p}.Y")
        g.custom(op, [wx, *ins, *weights], [y_all, *outs], name=f"{p}.{op}", function=net.function(op),
                 **net.q.op_attributes())
    else:
        g.custom(op, [wx, *ins, *weights], outs, name=f"{p}.{op}", function=net.function(op), **net.q.op_attributes())
        y_all = states["y"].output
    gn = layer.group_norm
    out = net.head_norm(net.to_heads(y_all, nh, dh, f"{p}.y_heads"), dh,
                        None if gn.weight_proxy is None else f32(gn.weight_proxy),
                        None if gn.bias is None else f32(gn.bias), gn.eps, f"{p}.group_norm")
    return g.op("Add", [x, out], name=f"{p}.residual")


def ffn(net: Net, block, i: int, x: str) -> str:
    if block.ffn is None:
        return x
    g, ffn, p = net.g, block.ffn, f"b{i}.ffn"
    xn = net.layer_norm(x, block.ffn_norm, f"{p}.norm")
    up = net.linear(xn, ffn.proj_up.weight, ffn.proj_up.bias, f"{p}.proj_up")
    gate, z = net.split(up, [ffn.config._proj_up_dim] * 2, f"{p}.split")
    h = g.op("Mul", [net.activation(ffn.config.act_fn, gate, f"{p}.act"), z], name=f"{p}.gated")
    y = net.linear(h, ffn.proj_down.weight, ffn.proj_down.bias, f"{p}.proj_down")
    return g.op("Add", [x, y], name=f"{p}.residual")


def large_block(net: Net, block, i: int, x: str, states, config) -> str:
    """One xLSTMLargeBlock (or xLSTMLargeBlockSequence) node: the whole block, its body in block_ops.py (fp16:
    large_block_cells)."""
    if net.q.compute_dtype == "float16":
        return large_block_cells(net, block, i, x, states, config)
    g, layer, ffn, p = net.g, block.mlstm_layer, block.ffn, f"b{i}"
    if config.weight_mode == "single":  # one product for q, k, v, o and one for the gates, as weight_mode "fused"
        parts = [layer.q, layer.k, layer.v, layer.ogate_preact]
        w_qkvo, b_qkvo = torch.cat([m.weight for m in parts]), _cat_bias(parts)
        w_if, b_if = torch.cat([layer.igate_preact.weight, layer.fgate_preact.weight]), _cat_bias(
            [layer.igate_preact, layer.fgate_preact])
        w_up, b_up = torch.cat([ffn.proj_up_gate.weight, ffn.proj_up.weight]), _cat_bias(
            [ffn.proj_up_gate, ffn.proj_up])
    else:
        w_qkvo, b_qkvo = layer.qkv_opreact.weight, _bias(layer.qkv_opreact)
        w_if, b_if = layer.ifgate_preact.weight, _bias(layer.ifgate_preact)
        w_up, b_up = ffn.proj_up_gate_z.weight, _bias(ffn.proj_up_gate_z)
    mn = layer.multihead_norm
    weights = {"norm_mlstm_weight": _norm_weight(block.norm_mlstm), "norm_mlstm_bias": _norm_bias(block.norm_mlstm),
               "W_qkvo": f32(w_qkvo).T, "b_qkvo": b_qkvo, "W_if": f32(w_if).T, "b_if": b_if,
               "head_norm_weight": _norm_weight(mn), "head_norm_bias": _norm_bias(mn),
               "W_out": f32(layer.out_proj.weight).T, "b_out": _bias(layer.out_proj),
               "norm_ffn_weight": _norm_weight(block.norm_ffn), "norm_ffn_bias": _norm_bias(block.norm_ffn),
               "W_up": f32(w_up).T, "b_up": b_up, "W_down": f32(ffn.proj_down.weight).T, "b_down": _bias(ffn.proj_down)}
    stored = net.q.op_weights(g, f"{p}.", weights, LARGE_BLOCK_MATRICES)
    nh = config.num_heads
    scalars = [net.scalar(f"{p}.gate_soft_cap", config.gate_soft_cap or 0.0),
               net.scalar(f"{p}.q_scale", (layer.qk_dim // nh) ** -0.5), net.scalar(f"{p}.eps", config.eps)]
    op = LARGE_BLOCK_SEQUENCE if net.seq else LARGE_BLOCK
    net.function(MLSTM_SEQUENCE.name if net.seq else MLSTM_CELL.name)  # the body's nested cell op
    y = g.fresh(f"{p}.y")
    g.custom(op.name, [x, *(states[s].input for s in "Cnm"), *stored[:len(weights)], *scalars,
                       *stored[len(weights):]], [y, *(states[s].output for s in "Cnm")], name=f"{p}.{op.name}",
             function=net.function(op.name), **{NORM_EPS: float(config.norm_eps)}, **net.q.op_attributes())
    return y



def large_block_cells(net: Net, block, i: int, x: str, states, config) -> str:
    """xLSTMLarge's block as one mLSTM cell-op node and standard-op layers: the fp16 form. The block op's kernel
    computes the norms that feed its float16 products itself; a value within a float32 bit of a float16 rounding
    boundary would land one float16 step away from the function body's, so fp16 files keep onnxruntime's ops
    for them."""
    g, layer, p = net.g, block.mlstm_layer, f"b{i}"
    nh = config.num_heads
    dqk, dv = layer.qk_dim // nh, layer.v_dim // nh
    xn = net.rms_norm(x, block.norm_mlstm, f"{p}.norm_mlstm")
    if config.weight_mode == "single":  # one MatMul for q, k, v, o and one for the gates, as weight_mode "fused"
        parts = [layer.q, layer.k, layer.v, layer.ogate_preact]
        w_qkvo = torch.cat([m.weight for m in parts])
        b_qkvo = None if parts[0].bias is None else torch.cat([m.bias for m in parts])
        w_if = torch.cat([layer.igate_preact.weight, layer.fgate_preact.weight])
        b_if = torch.cat([layer.igate_preact.bias, layer.fgate_preact.bias])
    else:
        w_qkvo, b_qkvo = layer.qkv_opreact.weight, layer.qkv_opreact.bias
        w_if, b_if = layer.ifgate_preact.weight, layer.ifgate_preact.bias
    q, k, v, o = net.split(net.linear(xn, w_qkvo, b_qkvo, f"{p}.qkvo"), [layer.qk_dim, layer.qk_dim, layer.v_dim,
                                                                         layer.v_dim], f"{p}.qkvo_split")
    gates = net.soft_cap(net.linear(xn, w_if, b_if, f"{p}.ifgate"), config.gate_soft_cap, f"{p}.gate_cap")
    i_pre, f_pre = net.split(gates, [nh, nh], f"{p}.if_split")
    consts = [net.scalar(f"{p}.q_scale", dqk ** -0.5), net.scalar(f"{p}.k_scale", 1.0),
              net.scalar(f"{p}.eps", config.eps)]
    op = (MLSTM_SEQUENCE if net.seq else MLSTM_CELL).name
    heads = [net.to_heads(q, nh, dqk, f"{p}.q_heads"), net.to_heads(k, nh, dqk, f"{p}.k_heads"),
             net.to_heads(v, nh, dv, f"{p}.v_heads")]
    h = g.fresh(f"{p}.h")
    g.custom(op, [*heads, i_pre, f_pre, *(states[s].input for s in "Cnm"), *consts],
             [h, *(states[s].output for s in "Cnm")], name=f"{p}.{op}", function=net.function(op))
    mn = layer.multihead_norm
    h_norm = net.head_norm(h, dv, None if mn.weight is None else f32(mn.weight),
                           None if mn.bias is None else f32(mn.bias), mn.eps, f"{p}.multihead_norm")
    h_out = g.op("Mul", [g.op("Sigmoid", [o], name=f"{p}.ogate"), h_norm], name=f"{p}.h_out")
    x = g.op("Add", [x, net.linear(h_out, layer.out_proj.weight, layer.out_proj.bias, f"{p}.out_proj")],
             name=f"{p}.residual_mlstm")
    ffn = block.ffn
    xf = net.rms_norm(x, block.norm_ffn, f"{p}.norm_ffn")
    if config.weight_mode == "single":
        w_up = torch.cat([ffn.proj_up_gate.weight, ffn.proj_up.weight])
        b_up = None if ffn.proj_up.bias is None else torch.cat([ffn.proj_up_gate.bias, ffn.proj_up.bias])
    else:
        w_up, b_up = ffn.proj_up_gate_z.weight, ffn.proj_up_gate_z.bias
    gate, z = net.split(net.linear(xf, w_up, b_up, f"{p}.ffn.proj_up"), [ffn.up_proj_dim] * 2, f"{p}.ffn.split")
    hf = g.op("Mul", [net.silu(gate, f"{p}.ffn.act"), z], name=f"{p}.ffn.gated")
    y = net.linear(hf, ffn.proj_down.weight, ffn.proj_down.bias, f"{p}.ffn.proj_down")
    return g.op("Add", [x, y], name=f"{p}.residual_ffn")

def _bias(linear) -> np.ndarray:
    """A linear layer's bias, zeros when it has none (the op always takes one: adding zeros keeps the values)."""
    return np.zeros(linear.weight.shape[0], np.float32) if linear.bias is None else f32(linear.bias)


def _headwise_bias(proj) -> np.ndarray:
    """A head-wise projection's bias ([NH, out/NH, in/NH] weights), zeros when it has none."""
    return np.zeros(proj.weight.shape[0] * proj.weight.shape[1], np.float32) if proj.bias is None else f32(proj.bias)


def _cat_bias(linears) -> np.ndarray:
    return np.concatenate([_bias(m) for m in linears])


def _layer_norm_weight(norm) -> np.ndarray:
    """The scale of xlstm's LayerNorm (1 + weight when residual_weight; ones without a weight)."""
    return np.ones(norm.ndim, np.float32) if norm.weight_proxy is None else f32(norm.weight_proxy)


def _layer_norm_bias(norm) -> np.ndarray:
    return np.zeros(norm.ndim, np.float32) if norm.bias is None else f32(norm.bias)


def _norm_weight(norm) -> np.ndarray:
    return np.ones(norm.num_features, np.float32) if norm.weight is None else f32(norm.weight)


def _norm_bias(norm) -> np.ndarray:
    return np.zeros(norm.num_features, np.float32) if norm.bias is None else f32(norm.bias)
