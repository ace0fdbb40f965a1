"""xLSTM models of the official ``xlstm`` package (2.0.4+): configs as JSON, CPU rebuilds, state layouts.

The maths is the package's own; nothing here re-implements a model. This module provides what the
toolkit needs around the package's modules:

- ``config_to_dict`` / ``config_from_dict``: the package's config dataclasses (nested mLSTM/sLSTM block,
  layer and feed-forward configs included) to and from plain JSON objects.
- ``build_stack`` / ``build_lm`` / ``build_large``: a module from such a JSON config, on CPU. A config
  with sLSTM ``backend="cuda"`` (how the package trains on GPU) builds a module with the CUDA backend's
  parameter layout (cells made with ``skip_backend_init=True``, the package's own way of moving models
  between backends), so a GPU checkpoint loads unchanged; ``cpu_reference`` runs it with the maths of the
  ``vanilla`` backend. xLSTMLarge kernel and mode fields do not change the weights: they are recorded as
  their CPU equivalents (``CPU_LARGE_SETTINGS``), so a model trained with the triton kernels builds here.
- ``cpu_reference``: the same weights in a module that the package runs on CPU (sLSTM ``vanilla``;
  xLSTMLarge ``chunkwise--native_autograd`` / ``native_sequence__native`` / step kernel ``native`` in
  ``mode="inference"``), in the precision of the given model (states included).
- ``StackStates`` / ``LargeStates``: the package's recurrent state (``xLSTMBlockStack.step``'s nested
  dict, ``xLSTMLarge.forward``'s per-block (C, n, m)) as flat named tensors with batch first, which are
  the state tensors of the exported ONNX file; ``run_stack_steps`` / ``run_large_steps`` stream a chunk
  through the package's step API (the parity reference).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import typing
import weakref
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from xlstm import xLSTMBlockStack, xLSTMBlockStackConfig, xLSTMLMModel, xLSTMLMModelConfig
from xlstm.blocks.mlstm.layer import mLSTMLayer
from xlstm.blocks.slstm.cell import sLSTMCell_cuda, sLSTMCell_vanilla
from xlstm.blocks.slstm.layer import sLSTMLayer

from ...config import ConfigError

try:  # xLSTMLarge needs mlstm_kernels (Python >= 3.11)
    from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig
except ImportError:  # pragma: no cover - depends on the environment
    xLSTMLarge = xLSTMLargeConfig = None

CPU_LARGE_SETTINGS = {
    "chunkwise_kernel": "chunkwise--native_autograd",
    "sequence_kernel": "native_sequence__native",
    "step_kernel": "native",
    "mode": "inference",
    "return_last_states": True,
    "inference_state_dtype": "float32",
}
SUPPORTED_SLSTM_BACKENDS = ("vanilla", "cuda")


# -- configs <-> JSON ------------------------------------------------------------------------------
def config_to_dict(config) -> Dict[str, Any]:
    """A package config dataclass (nested ones included) as a plain JSON object."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _dataclass_of(tp) -> Optional[type]:
    """The dataclass a field annotation names (``X`` or ``Optional[X]``), else None."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) is typing.Union:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return inner[0]
    return None


def config_from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build the package config dataclass ``cls`` from a JSON object, recursing into nested configs.

    Unknown fields are refused by name; the package's own ``__post_init__`` then derives the internal
    fields, exactly as when the config is written in Python.
    """
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields are {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        nested = _dataclass_of(fields[name].type)
        if nested is not None and value is not None:
            value = config_from_dict(nested, value, f"{where}.{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (AssertionError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise ConfigError(f"{where}: invalid config: {e or type(e).__name__}") from None


def _check_stack_config(config: xLSTMBlockStackConfig) -> None:
    if config.slstm_block is not None:
        cell = config.slstm_block.slstm
        if cell.backend not in SUPPORTED_SLSTM_BACKENDS:
            raise ConfigError(f"sLSTM backend {cell.backend!r} is not one of {SUPPORTED_SLSTM_BACKENDS}")
        if cell.function != "slstm":
            raise ConfigError(f"sLSTM cell function {cell.function!r} is not supported (only 'slstm')")
        if cell.embedding_dim % cell.num_heads:
            raise ConfigError(f"sLSTM embedding_dim {cell.embedding_dim} is not divisible by num_heads "
                              f"{cell.num_heads}")
    if config.mlstm_block is not None:
        layer = config.mlstm_block.mlstm
        if layer.conv1d_kernel_size < 1:
            raise ConfigError("mLSTM conv1d_kernel_size must be >= 1 (the package's mLSTM layer needs its conv)")
        if layer._inner_embedding_dim % layer.num_heads:
            raise ConfigError(f"mLSTM inner dimension {layer._inner_embedding_dim} is not divisible by num_heads "
                              f"{layer.num_heads}")


# -- building modules on CPU -----------------------------------------------------------------------
def _slstm_layers(stack: xLSTMBlockStack) -> List[Tuple[str, sLSTMLayer]]:
    return [(f"blocks.{i}.xlstm", b.xlstm) for i, b in enumerate(stack.blocks) if isinstance(b.xlstm, sLSTMLayer)]


def _build_with_slstm_layout(module_cls: type, config) -> nn.Module:
    """``module_cls(config)`` on CPU; sLSTM cells of ``backend="cuda"`` get that backend's layout, unrun."""
    _check_stack_config(config)
    cuda = config.slstm_block is not None and config.slstm_block.slstm.backend == "cuda"
    if not cuda:
        return module_cls(config)
    cpu_config = copy.deepcopy(config)
    cpu_config.slstm_block.slstm.backend = "vanilla"
    model = module_cls(cpu_config)
    for _, layer in _slstm_layers(block_stack(model)):
        cell_config = dataclasses.replace(layer.config, backend="cuda", internal_input_shape="SBNGH")
        layer.config = cell_config
        layer.slstm_cell = sLSTMCell_cuda(cell_config, skip_backend_init=True)
    model.config = config
    if isinstance(model, xLSTMLMModel):
        model.xlstm_block_stack.config = config
    return model


def build_stack(d: Dict[str, Any]) -> xLSTMBlockStack:
    return _build_with_slstm_layout(xLSTMBlockStack, config_from_dict(xLSTMBlockStackConfig, d)).eval()


def build_lm(d: Dict[str, Any]) -> xLSTMLMModel:
    config = config_from_dict(xLSTMLMModelConfig, d)
    if config.vocab_size < 1:
        raise ConfigError(f"xLSTMLMModelConfig.vocab_size must be a positive integer, got {config.vocab_size}")
    return _build_with_slstm_layout(xLSTMLMModel, config).eval()


def large_config_dict(config) -> Dict[str, Any]:
    """An xLSTMLarge config as JSON, with the kernel/mode fields as their CPU equivalents."""
    d = config_to_dict(config)
    d.update(CPU_LARGE_SETTINGS)
    return d


def stack_summary(d: Dict[str, Any]) -> Dict[str, Any]:
    """What ``qlstm-edge info`` prints for an xLSTMBlockStack / xLSTMLMModel config (``--json``: all of it; the
    package's config also carries fields only its CUDA kernels read, such as their bfloat16 dtypes)."""
    kinds = ["sLSTM" if k == "1" else "mLSTM" for k in str(d["_block_map"]).split(",")]
    rows: Dict[str, Any] = {"blocks": f"{len(kinds)}: {', '.join(kinds)}", "embedding_dim": d["embedding_dim"]}
    if "vocab_size" in d:
        rows["vocab_size"] = d["vocab_size"]
    rows["context_length"] = d["context_length"]
    if "mLSTM" in kinds:
        ml = d["mlstm_block"]["mlstm"]
        rows["mLSTM"] = (f"{ml['num_heads']} heads, up-projection x{ml['proj_factor']} (inner "
                         f"{ml['_inner_embedding_dim']}), conv kernel {ml['conv1d_kernel_size']}, q/k/v in blocks of "
                         f"{ml['qkv_proj_blocksize']}, bias {ml['bias']}")
    if "sLSTM" in kinds:
        sl, ff = d["slstm_block"]["slstm"], d["slstm_block"]["feedforward"]
        rows["sLSTM"] = (f"{sl['num_heads']} heads, conv kernel {sl['conv1d_kernel_size']}, FFN {ff['ff_type']} "
                         f"x{ff['proj_factor']} {ff['act_fn']}; trained with backend {sl['backend']!r}, exported with "
                         f"the vanilla maths in float32")
    for key, label in (("add_post_blocks_norm", "post_blocks_norm"), ("tie_weights", "tie_weights")):
        if key in d:
            rows[label] = d[key]
    return rows


def large_summary(d: Dict[str, Any]) -> Dict[str, Any]:
    """What ``qlstm-edge info`` prints for an xLSTMLarge config (``--json``: all of it)."""
    return {"blocks": f"{d['num_blocks']}: mLSTM", "embedding_dim": d["embedding_dim"], "vocab_size": d["vocab_size"],
            "mLSTM": f"{d['num_heads']} heads, q/k dim x{d['qk_dim_factor']}, v dim x{d['v_dim_factor']}, "
                     f"bias {d['use_bias']}, weight_mode {d['weight_mode']!r}",
            "FFN": f"x{d['ffn_proj_factor']} (rounded up to a multiple of {d['ffn_round_up_to_multiple_of']})",
            "soft_caps": f"gates {d['gate_soft_cap']}, logits {d['output_logit_soft_cap']}",
            "norm_eps": d["norm_eps"], "out_norm": d["add_out_norm"]}


def build_large(d: Dict[str, Any]) -> "xLSTMLarge":
    if xLSTMLarge is None:
        raise ConfigError("xLSTMLarge needs the mlstm_kernels package (Python >= 3.11): "
                          "pip install 'qlstm-edge[xlstm]'")
    d = dict(d)
    d.update(CPU_LARGE_SETTINGS)
    config = config_from_dict(xLSTMLargeConfig, d)
    if config.embedding_dim % config.num_heads:
        raise ConfigError(f"xLSTMLarge embedding_dim {config.embedding_dim} is not divisible by num_heads "
                          f"{config.num_heads}")
    try:
        return xLSTMLarge(config).eval()
    except (AssertionError, ValueError) as e:
        raise ConfigError(f"xLSTMLargeConfig: invalid config: {e}") from None


def block_stack(model: nn.Module) -> xLSTMBlockStack:
    return model.xlstm_block_stack if isinstance(model, xLSTMLMModel) else model


# -- the package's CPU maths for a model -----------------------------------------------------------
def _param_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def _needs_cpu_rebuild(model: nn.Module) -> bool:
    if xLSTMLarge is not None and isinstance(model, xLSTMLarge):
        c = model.config
        state_dtype = str(_param_dtype(model)).replace("torch.", "")
        return (any(getattr(c, k) != v for k, v in CPU_LARGE_SETTINGS.items() if k != "inference_state_dtype")
                or c.inference_state_dtype != state_dtype
                or (c.norm_reduction_force_float32 and _param_dtype(model) != torch.float32))
    return any(not isinstance(layer.slstm_cell, sLSTMCell_vanilla) for _, layer in _slstm_layers(block_stack(model)))


def _rebuild_on_cpu(model: nn.Module) -> nn.Module:
    dtype = _param_dtype(model)
    if xLSTMLarge is not None and isinstance(model, xLSTMLarge):
        d = config_to_dict(model.config)
        d.update(CPU_LARGE_SETTINGS, inference_state_dtype=str(dtype).replace("torch.", ""))
        if dtype != torch.float32:  # the package reduces norms in fp32 for speed; keep the model's precision
            d["norm_reduction_force_float32"] = False
        ref = xLSTMLarge(config_from_dict(xLSTMLargeConfig, d))
        ref.load_state_dict(model.state_dict())
        return ref.to(dtype).eval()
    d = config_to_dict(model.config)
    d["slstm_block"]["slstm"]["backend"] = "vanilla"
    ref = (build_lm if isinstance(model, xLSTMLMModel) else build_stack)(d)
    sd = model.state_dict()
    for (name, old), (_, new) in zip(_slstm_layers(block_stack(model)), _slstm_layers(block_stack(ref))):
        prefix = f"xlstm_block_stack.{name}" if isinstance(model, xLSTMLMModel) else name
        old_cell, new_cell = old.slstm_cell, new.slstm_cell
        sd[f"{prefix}.slstm_cell._recurrent_kernel_"] = new_cell._recurrent_kernel_ext2int(
            old_cell._recurrent_kernel_int2ext(old_cell._recurrent_kernel_))
        sd[f"{prefix}.slstm_cell._bias_"] = new_cell._bias_ext2int(old_cell._bias_int2ext(old_cell._bias_))
    ref.to(dtype)
    ref.load_state_dict(sd)
    return ref.eval()


_REFERENCES: "weakref.WeakKeyDictionary[nn.Module, Tuple[tuple, nn.Module]]" = weakref.WeakKeyDictionary()


def _weights_version(model: nn.Module) -> tuple:
    return tuple((p.data_ptr(), p._version, p.dtype) for p in model.parameters())


def cpu_reference(model: nn.Module) -> nn.Module:
    """``model`` itself if the package runs it on CPU as it is, else a CPU-backend copy of its weights.

    Copies are cached per model and rebuilt when its parameters change.
    """
    if not _needs_cpu_rebuild(model):
        return model
    version = _weights_version(model)
    cached = _REFERENCES.get(model)
    if cached is None or cached[0] != version:
        with torch.no_grad():
            cached = (version, _rebuild_on_cpu(model))
        _REFERENCES[model] = cached
    return cached[1]


# -- recurrent state: the package's structures <-> flat named tensors -------------------------------
class StackStates:
    """The state of ``xLSTMBlockStack.step`` as flat tensors, batch first, per block ``b{i}``.

    mLSTM block: ``b{i}.C`` [B, NH, DH, DH], ``b{i}.n`` [B, NH, DH, 1], ``b{i}.m`` [B, NH, 1, 1] (the
    package's ``mlstm_state``), ``b{i}.conv`` [B, KS, inner] (its ``conv_state``). sLSTM block: the
    package's ``slstm_state`` [4, B, H] split into ``b{i}.y``, ``b{i}.c``, ``b{i}.n``, ``b{i}.m`` [B, H];
    ``b{i}.conv`` [B, KS, H] when the block has a conv.
    """

    def __init__(self, stack: xLSTMBlockStack):
        self.blocks = []  # (index, kind, {state name: per-row shape})
        for i, block in enumerate(stack.blocks):
            layer = block.xlstm
            if isinstance(layer, mLSTMLayer):
                nh, inner = layer.config.num_heads, layer.config._inner_embedding_dim
                dh = inner // nh
                shapes = {"C": [nh, dh, dh], "n": [nh, dh, 1], "m": [nh, 1, 1],
                          "conv": [layer.config.conv1d_kernel_size, inner]}
                self.blocks.append((i, "mlstm", {f"b{i}.{k}": v for k, v in shapes.items()}))
            else:
                h = layer.config.embedding_dim
                shapes = {f"b{i}.{k}": [h] for k in "ycnm"}
                if layer.config.conv1d_kernel_size > 0:
                    shapes[f"b{i}.conv"] = [layer.config.conv1d_kernel_size, h]
                self.blocks.append((i, "slstm", shapes))

    @property
    def shapes(self) -> Dict[str, List[int]]:
        return {name: shape for _, _, shapes in self.blocks for name, shape in shapes.items()}

    def to_package(self, flat: Optional[Dict[str, np.ndarray]], dtype: torch.dtype) -> Optional[dict]:
        if flat is None:
            return None
        t = {k: torch.tensor(np.asarray(v), dtype=dtype) for k, v in flat.items()}  # copies: step mutates
        state = {}
        for i, kind, shapes in self.blocks:
            if kind == "mlstm":
                state[f"block_{i}"] = {"mlstm_state": (t[f"b{i}.C"], t[f"b{i}.n"], t[f"b{i}.m"]),
                                       "conv_state": (t[f"b{i}.conv"],)}
            else:
                state[f"block_{i}"] = {"slstm_state": torch.stack([t[f"b{i}.{k}"] for k in "ycnm"]),
                                       "conv_state": (t[f"b{i}.conv"],) if f"b{i}.conv" in shapes else None}
        return state

    def from_package(self, state: dict) -> Dict[str, np.ndarray]:
        out = {}
        for i, kind, shapes in self.blocks:
            s = state[f"block_{i}"]
            if kind == "mlstm":
                out[f"b{i}.C"], out[f"b{i}.n"], out[f"b{i}.m"] = s["mlstm_state"]
                out[f"b{i}.conv"] = s["conv_state"][0]
            else:
                for k, v in zip("ycnm", s["slstm_state"].unbind(0)):
                    out[f"b{i}.{k}"] = v
                if f"b{i}.conv" in shapes:
                    out[f"b{i}.conv"] = s["conv_state"][0]
        return {k: v.detach().cpu().numpy().copy() for k, v in out.items()}


class LargeStates:
    """xLSTMLarge's state ``{block: (C [B, NH, DQK, DV], n [B, NH, DQK], m [B, NH, 1])}`` as ``b{i}.C/n/m``."""

    def __init__(self, model: "xLSTMLarge"):
        c = model.config
        dqk = int(c.embedding_dim * c.qk_dim_factor) // c.num_heads
        dv = int(c.embedding_dim * c.v_dim_factor) // c.num_heads
        self.num_blocks = c.num_blocks
        self.shapes = {}
        for i in range(c.num_blocks):
            self.shapes.update({f"b{i}.C": [c.num_heads, dqk, dv], f"b{i}.n": [c.num_heads, dqk],
                                f"b{i}.m": [c.num_heads, 1]})

    def to_package(self, flat: Optional[Dict[str, np.ndarray]], dtype: torch.dtype) -> Optional[dict]:
        if flat is None:
            return None
        return {i: tuple(torch.tensor(np.asarray(flat[f"b{i}.{k}"]), dtype=dtype) for k in "Cnm")
                for i in range(self.num_blocks)}

    def from_package(self, state: dict) -> Dict[str, np.ndarray]:
        return {f"b{i}.{k}": v.detach().cpu().numpy().copy()
                for i in range(self.num_blocks) for k, v in zip("Cnm", state[i])}


def run_stack_steps(model: nn.Module, x: torch.Tensor, state: Optional[Dict[str, np.ndarray]]):
    """Stream ``x`` [B, T, ...] through the package's ``step`` API of a block stack or LM model.

    Returns (per-step outputs [B, T, ...] as numpy, final state as flat numpy tensors).
    """
    if x.shape[1] == 0:
        raise ValueError("run_stack_steps needs at least one step")
    ref = cpu_reference(model)
    states = StackStates(block_stack(ref))
    pkg = states.to_package(state, _param_dtype(ref))
    ys = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, pkg = ref.step(x[:, t:t + 1], pkg)
            ys.append(y)
    return torch.cat(ys, dim=1).cpu().numpy(), states.from_package(pkg)


def run_large_steps(model: "xLSTMLarge", x: torch.Tensor, state: Optional[Dict[str, np.ndarray]]):
    """Stream token ids ``x`` [B, T] through ``xLSTMLarge.forward(x_t, state)`` in inference mode."""
    if x.shape[1] == 0:
        raise ValueError("run_large_steps needs at least one step")
    ref = cpu_reference(model)
    states = LargeStates(ref)
    pkg = states.to_package(state, _param_dtype(ref))
    ys = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, pkg = ref(x[:, t:t + 1], pkg)
            ys.append(y)
    return torch.cat(ys, dim=1).cpu().numpy(), states.from_package(pkg)
