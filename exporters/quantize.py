"""Quantization at export time: the policy a family's recipe uses to add its weights, and the op contract.

Modes (``export_onnx(..., quantize=MODE)``, ``qlstm-edge export --quantize MODE``):

    None            everything float32 (the default).
    "fp16"          matrix weights float16 and the matrix products computed in float16 (meant for
                    ``--target cuda``; CPU onnxruntime runs it too, slowly). Element-wise maths, biases and
                    every recurrent state stay float32 (each family says which states and why). The model's
                    data input/output stay float32 unless ``io_dtype="float16"``.
    "int8"          weight-only: matrices int8, symmetric (zero point 0, values in [-127, 127]), one float32
                    scale per output channel; activations and recurrent state stay float32.
    "int8-dynamic"  int8 weights as "int8", and every matrix product quantizes its activation on the fly,
                    per row (per batch row and time step): scale = max(max|x| / 127, 1e-30),
                    x_q = Clip(Round(x / scale), -127, 127), y = MatMulInteger(x_q, W_q) * scale * W_scale:
                    integer dot products, standard ops only. Both operands enter MatMulInteger as uint8 with
                    zero point 128 (x_q + 128, and W_q + 128 made from the stored int8 W_q by ops onnxruntime
                    folds at load): that uint8 x uint8 form sums exactly on every onnxruntime CPU kernel, where
                    uint8 x int8 saturates pairs of products to int16 on x86 without VNNI and int8 x int8 runs
                    25-50x slower (docs/int8-dynamic.md has the measurements).
    "int4"          weight-only, block-wise: values in [-7, 7], one float32 scale per block of ``block_size``
                    (default 32) consecutive input rows of one output channel. Every int4 tensor is stored packed
                    (INT4_PACKED, ``pack_int4``): uint8, two values per byte, low nibble first, each as q + 8. No
                    file holds an ONNX INT4 tensor (onnxruntime's ORT format cannot, onnxoptimizer rejects it);
                    the unpacking needs BitwiseAnd, so int4 files are written with opset 18 and IR version 8
                    (onnxruntime >= 1.15, INT4_MIN_ONNXRUNTIME). Stock onnxruntime folds the dequantization of
                    every weight matrix into a float32 initializer when it loads the file, as with int8: int4
                    shrinks the file, not the run-time memory (the native kernels hold the weights as int8).

Every weight-bearing layer is covered: the custom cell ops' matrices, embedding tables and the matrices of
standard-op layers (input maps, heads). Vectors (biases, per-gate scales, ...) stay float32.

Custom-op contract for quantized weights (version 1; every qlstm_edge custom op follows it)
------------------------------------------------------------------------------------------
A custom op's matrix input W is input-major, [K, N] (the op computes x @ W; N is the output-channel axis).
A quantized model still has ONE custom node per cell, with the same op name and the same input positions:

* fp32:          W float32 [K, N]; nothing appended; no attributes (the unquantized contract, unchanged).
* fp16:          W float16 [K, N]; nothing appended. The op's ``x`` input is float16 when it enters a matrix
                 product (an input that only enters element-wise maths, like the sLSTM's gate pre-activations,
                 stays float32); state inputs/outputs and the op's vector parameters stay float32.
* int8 and
  int8-dynamic:  W int8 [K, N], symmetric, zero point 0; its scale is float32 [N]: W ~= W_q * scale[None, :].
* int4:          W_q [K, N] (values in [-7, 7]) stored packed: W uint8 [K, ceil(N / 2)], byte W[k, j] holding
                 W_q[k, 2j] + 8 in its low nibble and W_q[k, 2j + 1] + 8 in its high one (an odd N pads the
                 last high nibble with 8); its scale is float32 [ceil(K / block_size), N]:
                 W[k, n] ~= W_q[k, n] * scale[k // block_size, n] (the last block may be short). N is the
                 scale's last dimension. (Files exported before this storage hold W as ONNX INT4 [K, N] instead;
                 the native kernels still accept that form.)
* Stacked matrices: an input W [..., K, N] holding several [K, N] matrices (PR-LSTM's W_unary [R, H, 4H], the
  sLSTM's R [4, NH, DH, DH]) is stored slice by slice: int8 scale [..., N], int4 W uint8 [..., K, ceil(N / 2)]
  and scale [..., ceil(K / block_size), N]; slice W[j] with scale[j] follows the rules above.
* Scales: in int8 / int8-dynamic / int4 one scale input per matrix input is APPENDED after the op's last
  regular input, in the order of the matrix inputs (``<matrix>_scale``; for QL-LSTM: W_x_scale, W_h_scale).
* Attributes (only on quantized nodes): ``quant_mode`` (string: "fp16", "int8", "int8-dynamic", "int4")
  and ``block_size`` (int; 0 unless int4). A native kernel tells the modes apart by them and by the element
  types; "int8-dynamic" asks it to quantize activations per row as described above (the function body is the
  exact reference of that arithmetic); a product with stacked per-head matrices (the sLSTM's y @ R) quantizes
  each head's row of the activation on its own.

Each op's function body dequantizes with standard ops (int8: Cast + Mul; int4: ``dequantize_int4``, the
nibbles unpacked with BitwiseAnd / BitShift, then times the scale rows Gathered per input row), so stock
onnxruntime and ``onnx.reference`` run every mode with no extra library.

Standard-op layers (not custom ops) use the same storage: a matrix [K, N] quantized per output channel
(int8) or in blocks along K (int4, packed as above); an embedding table [V, E] is quantized per row (int8:
scale [V]; int4: blocks along E, scale [V, ceil(E / block_size)]), and the Gather picks the stored rows and
their scales before dequantizing (only the rows used are dequantized): an int4 table is stored packed as uint8
[V, ceil(E / 2)] and unpacked after the Gather. Stacked matrices of
standard-op layers (xLSTM's head-wise projections, [..., K, N]) are stored as stacked custom-op matrices are.
Every dequantization of a weight matrix uses only ops onnxruntime folds at load. The metadata's
``quantization.tensors`` entry of every int4 tensor says how it is stored (``"storage": INT4_PACKED``).

Adopting it in a family's recipe (``g.quant`` is the :class:`Quantizer` for the export; ``Quantizer()`` is fp32):
    y = q.linear(g, "head", q.to_compute(g, h), W_t, b)      # standard-op matrix layer (+ bias)
    e = q.embedding(g, "embedding", table, ids)             # token embedding
    ins = q.op_weights(g, "l0.", {"W": w, "b": b}, matrices=["W"])   # custom-op weight inputs (+ scales)
    # in the op's function body (declared inputs: [..., *WEIGHTS, *q.scale_inputs(["W"])]):
    w = q.body_weight(fb, "W", "W_scale"); y = q.body_matmul(fb, x, w, "W_scale", opset)  # float32 result
    g.custom(op, inputs, outputs, name, function=q.declare_attributes(fn), **q.op_attributes())
and list the supported modes in the recipe's ``quantization_modes``. What a mode does is its :class:`Scheme`
(``SCHEMES[mode]``, ``q.scheme``: compute dtype, integer / packed / blocked / dynamic, how a matrix is stored,
dequantized and multiplied, the opset and IR version it needs): family code asks those, never the mode string.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..ops import scale_input

NONE_ALIASES = (None, "none", "fp32", "float32")
DEFAULT_BLOCK_SIZE = 32
INT8_MAX = 127
INT4_MAX = 7
INT4_OPSET = 18  # BitwiseAnd, which unpacks the packed nibbles (``unpack_int4``)
INT4_IR_VERSION = 8
INT4_MIN_ONNXRUNTIME = "1.15"  # opset 18 / IR 8, uint8 BitwiseAnd and BitShift (benchmarks/ort_compat.py)
DEFAULT_MIN_ONNXRUNTIME = "1.15"  # IR 8 / opset 17 (benchmarks/ort_compat.py)
ACT_SCALE_FLOOR = 1e-30  # int8-dynamic: smallest per-row scale, so an all-zero row never divides by zero
ZERO_POINT = 128  # int8-dynamic: x_q and W_q enter MatMulInteger as uint8 x_q + 128, W_q + 128 (exact products)
FP16_MAX = float(np.finfo(np.float16).max)
IO_DTYPES = ("float32", "float16")
CONTRACT_VERSION = 1


INT4_PACKED = "uint8, two per byte (low nibble first), q + 8"  # how every int4 tensor is stored (pack_int4)
Weight = Tuple[str, Optional[str]]  # (the weight a MatMul reads, its scale for int8-dynamic's MatMulInteger)


class QuantizationError(ValueError):
    """A weight that cannot be quantized (non-finite, out of range) or an invalid quantization request."""


def check_finite(name: str, w: np.ndarray) -> None:
    bad = ~np.isfinite(w)
    if bad.any():
        idx = np.unravel_index(int(np.flatnonzero(bad)[0]), w.shape)
        raise QuantizationError(f"cannot quantize {name!r}: it holds {int(bad.sum())} non-finite value(s) "
                                f"(first: {w[idx]} at index {list(map(int, idx))}); fix the model's weights")


def quantize_symmetric(name: str, w: np.ndarray, bits: int, channel_axis: int,
                       block_size: Optional[int] = None):
    """Symmetric quantization of a 2-D float matrix ``w``.

    Without ``block_size``: one scale per index of ``channel_axis`` (shape [w.shape[channel_axis]]).
    With ``block_size``: blocks of ``block_size`` consecutive elements along the OTHER axis, one scale per
    (block, channel); the scale has w's shape with that axis shrunk to ceil(n / block_size)
    (DequantizeLinear's blocked layout). Returns (q, scale): q is int8 (bits=8) or ml_dtypes.int4 (bits=4)
    with |q| <= 2**(bits-1) - 1, scale float32. An all-zero (or sub-1e-38-tiny) channel or block gets
    scale 1 and q = 0, so nothing divides by zero; non-finite weights raise QuantizationError.
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise QuantizationError(f"cannot quantize {name!r}: expected a matrix, got shape {list(w.shape)}")
    check_finite(name, w)
    qmax = {8: INT8_MAX, 4: INT4_MAX}[bits]
    w64 = w.astype(np.float64)
    if block_size is None:
        amax = np.abs(w64).max(axis=1 - channel_axis, keepdims=True)
        scale = _scale(amax, qmax)
        full = scale
    else:
        block_axis = 1 - channel_axis
        wt = np.moveaxis(w64, block_axis, 0)  # [K, C]: blocks along K
        k = wt.shape[0]
        nb = -(-k // block_size)
        padded = np.zeros((nb * block_size, wt.shape[1]))
        padded[:k] = wt
        amax = np.abs(padded.reshape(nb, block_size, -1)).max(axis=1)  # [nb, C]
        scale_t = _scale(amax, qmax)
        full = np.moveaxis(np.repeat(scale_t, block_size, axis=0)[:k], 0, block_axis)
        scale = np.moveaxis(scale_t, 0, block_axis)
    q = np.clip(np.rint(w64 / full.astype(np.float64)), -qmax, qmax)
    q = q.astype(np.int8) if bits == 8 else q.astype(np.int8).astype(ml_dtypes.int4)
    scale = scale.astype(np.float32)
    return q, (scale.reshape(-1) if block_size is None else scale)


def _scale(amax: np.ndarray, qmax: int) -> np.ndarray:
    scale = (amax / qmax).astype(np.float32)
    return np.where(scale > 0, scale, np.float32(1.0))  # all-zero channel: q = 0 whatever the scale


def dequantize(q: np.ndarray, scale: np.ndarray, channel_axis: int, block_size: Optional[int] = None) -> np.ndarray:
    """float32 values of ``quantize_symmetric``'s output (numpy mirror of the graph's dequantization)."""
    qf = np.asarray(q).astype(np.int8).astype(np.float32)
    if block_size is None:
        return qf * (scale[None, :] if channel_axis == 1 else scale[:, None])
    block_axis = 1 - channel_axis
    k = qf.shape[block_axis]
    return qf * np.repeat(scale, block_size, axis=block_axis).take(np.arange(k), axis=block_axis)


def to_fp16(name: str, w: np.ndarray) -> np.ndarray:
    check_finite(name, w)
    big = np.abs(w) > FP16_MAX
    if big.any():
        raise QuantizationError(f"cannot store {name!r} as float16: {int(big.sum())} value(s) exceed float16's "
                                f"range (max |w| = {float(np.abs(w).max()):.4g} > {FP16_MAX:g})")
    return w.astype(np.float16)


# -- schemes: one class per mode, saying what it does ------------------------------------------------------
class Scheme:
    """What one quantization mode does: how a matrix is stored, what a matrix product reads, what the file needs.

    The base class is fp32: every matrix stored as the model holds it, products in float32. Subclasses change
    only what their mode changes; the :class:`Quantizer` and the families ask these attributes, never the name.
    """

    name: Optional[str] = None  # the user-facing mode (None: fp32)
    compute_dtype = "float32"  # element type of the activations that enter matrix products
    product_weight_dtype = "float32"  # element type of the weight a matrix product reads
    integer = False  # matrices stored as integers, a float32 scale input appended per matrix
    bits: Optional[int] = None  # width of the stored integers
    packed = False  # two values per byte (uint8), unpacked in the graph
    blocked = False  # one scale per block of ``block_size`` input rows, not one per output channel
    dynamic = False  # activations quantized per row on the fly, products in integers (MatMulInteger)
    min_opset = 17  # what the file needs beyond the exporters' default (graph.DEFAULT_OPSET / IR version)
    min_ir_version = 8
    min_onnxruntime = DEFAULT_MIN_ONNXRUNTIME
    granularity: Optional[str] = None  # the metadata's description of the scales
    weights_doc = "float32"
    activations_doc = "float32"

    @property
    def weight_only(self) -> bool:
        """Integer weights dequantized to float32 before the product (the graph folds it at load)."""
        return self.integer and not self.dynamic

    def store(self, name: str, w: np.ndarray, channel_axis: int, block_size: int):
        """Matrix ``w`` as stored: (values, scale or None, the ``quantization.tensors`` entry or None). The entry's
        ``scale`` is filled in by the caller with the scale's initializer name."""
        return w, None, None

    def store_stacked(self, name: str, w: np.ndarray, block_size: int):
        """Stacked matrices ``w`` [..., K, N] as stored, slice by slice (as ``store``)."""
        return self.store(name, w, w.ndim - 1, block_size)

    def dequantize(self, nb, w: str, scale: str, block_size: int, name: str) -> str:
        """float32 matrix [K, N] from its stored form (weight-only schemes)."""
        raise NotImplementedError(f"{self.name or 'fp32'} stores no integer weights")

    def dequantize_stacked(self, nb, w: str, scale: str, block_size: int, name: str) -> str:
        """float32 stacked matrices [..., K, N] from their stored form (weight-only schemes)."""
        raise NotImplementedError(f"{self.name or 'fp32'} stores no integer weights")

    def product_weight(self, nb, w: str, scale: Optional[str], block_size: int, name: str, stacked: bool) -> str:
        """The tensor a matrix product reads for stored weight ``w``: dequantized (weight-only), the uint8 form
        (dynamic: ``unsigned_weight``, named ``<w>_u8``) or ``w`` itself."""
        if self.weight_only:
            return (self.dequantize_stacked if stacked else self.dequantize)(nb, w, scale, block_size, name)
        if self.dynamic:
            return unsigned_weight(nb, w, name=f"{w}_u8")
        return w

    def matmul(self, nb, x: str, w: str, scale: Optional[str], opset: int, name: str, x_is_compute: bool) -> str:
        """float32 ``x @ W`` for ``w`` from ``product_weight``; ``x`` float32 unless ``x_is_compute``."""
        return nb.op("MatMul", [x, w], name=name)


class Float16Scheme(Scheme):
    """fp16: matrices float16, products in float16 (their input cast, their result cast back to float32)."""

    name = "fp16"
    compute_dtype = product_weight_dtype = "float16"
    weights_doc = "float16"
    activations_doc = "float16 matrix-product inputs; element-wise maths and states float32"

    def store(self, name, w, channel_axis, block_size):
        return to_fp16(name, w), None, {"dtype": "float16", "shape": list(w.shape)}

    def matmul(self, nb, x, w, scale, opset, name, x_is_compute):
        x16 = x if x_is_compute else nb.op("Cast", [x], name=f"{name}.x16", to=TensorProto.FLOAT16)
        return nb.op("Cast", [nb.op("MatMul", [x16, w], name=name)], name=f"{name}.f32", to=TensorProto.FLOAT)


class Int8Scheme(Scheme):
    """int8: weight-only, symmetric, one float32 scale per output channel; products in float32."""

    name = "int8"
    integer = True
    bits = 8
    granularity = "per-output-channel"
    weights_doc = f"int8 symmetric (zero point 0) in [-{INT8_MAX}, {INT8_MAX}]"

    def _entry(self, w: np.ndarray, scale: np.ndarray, channel_axis: int, block_axis: int, block_size: int) -> dict:
        """The ``quantization.tensors`` entry of a matrix stored by this scheme (``scale``: its name, set later)."""
        block = block_size if self.blocked else None
        storage = {"storage": INT4_PACKED} if self.packed else {}
        return {"dtype": f"int{self.bits}", **storage, "shape": list(w.shape), "scale": None,
                "scale_shape": list(scale.shape), "channel_axis": channel_axis,
                "block_axis": block_axis if block else None, "block_size": block}

    def _values(self, q: np.ndarray) -> np.ndarray:
        return pack_int4(q) if self.packed else q

    def store(self, name, w, channel_axis, block_size):
        block = block_size if self.blocked else None
        q, scale = quantize_symmetric(name, w, self.bits, channel_axis, block)
        return self._values(q), scale, self._entry(w, scale, channel_axis, 1 - channel_axis, block_size)

    def store_stacked(self, name, w, block_size):
        *lead, k, n = w.shape
        block = block_size if self.blocked else None
        if w.size:
            wq, scale = quantize_stacked(name, w, self.bits, block)
        else:  # no slices (PR-LSTM with num_layers = 1 has no unary refinements)
            wq = np.zeros(w.shape, np.int8)
            scale = np.ones((*lead, *([] if block is None else [-(-k // block)]), n), np.float32)
        return self._values(wq), scale, self._entry(w, scale, w.ndim - 1, w.ndim - 2, block_size)

    def dequantize(self, nb, w, scale, block_size, name):
        return nb.op("Mul", [nb.op("Cast", [w], name=f"{name}.cast", to=TensorProto.FLOAT), scale], name=name)

    def dequantize_stacked(self, nb, w, scale, block_size, name):
        return nb.op("Mul", [nb.op("Cast", [w], name=f"{name}.cast", to=TensorProto.FLOAT),
                             stacked_scale(nb, scale, f"{name}.scale")], name=name)


class Int8DynamicScheme(Int8Scheme):
    """int8-dynamic: int8 weights as int8, activations quantized per row on the fly, integer products
    (uint8 x uint8 MatMulInteger, exact on every onnxruntime CPU kernel: ``dynamic_matmul``)."""

    name = "int8-dynamic"
    dynamic = True
    product_weight_dtype = "uint8"
    weights_doc = (f"int8 symmetric (zero point 0) in [-{INT8_MAX}, {INT8_MAX}]; products read them as uint8 "
                   f"W_q + {ZERO_POINT} (zero point {ZERO_POINT})")
    activations_doc = (f"int8, symmetric, per row and step, scale = max(max|x|/127, {ACT_SCALE_FLOOR:g}); products "
                       f"read them as uint8 x_q + {ZERO_POINT} (zero point {ZERO_POINT}): uint8 x uint8 MatMulInteger, "
                       f"exact on every onnxruntime CPU kernel")

    def matmul(self, nb, x, w, scale, opset, name, x_is_compute):
        return dynamic_matmul(nb, x, w, scale, opset, name=name)


class Int4Scheme(Int8Scheme):
    """int4: weight-only, symmetric, one float32 scale per block of input rows; stored packed two per byte."""

    name = "int4"
    bits = 4
    packed = blocked = True
    min_opset = INT4_OPSET
    min_ir_version = INT4_IR_VERSION
    min_onnxruntime = INT4_MIN_ONNXRUNTIME
    granularity = "block"
    weights_doc = f"int4 symmetric (zero point 0) in [-{INT4_MAX}, {INT4_MAX}]"

    def dequantize(self, nb, w, scale, block_size, name):
        return dequantize_int4(nb, w, scale, block_size, name)

    dequantize_stacked = dequantize


SCHEMES: Dict[Optional[str], Scheme] = {s.name: s for s in (Scheme(), Float16Scheme(), Int8Scheme(),
                                                             Int8DynamicScheme(), Int4Scheme())}
MODES = tuple(name for name in SCHEMES if name is not None)


def normalize_mode(mode: Optional[str]) -> Optional[str]:
    """None for fp32 (also "none"/"fp32"), else one of MODES; a clear error otherwise."""
    if mode in NONE_ALIASES:
        return None
    if mode not in MODES:
        raise QuantizationError(f"quantize must be None or one of {', '.join(MODES)}, got {mode!r}")
    return mode


class Quantizer:
    """The quantization policy of one export; recipes reach it as ``g.quant`` (see the module docstring).

    ``Quantizer()`` is fp32: every helper then emits exactly the plain float32 graph. What a mode does is its
    :class:`Scheme` (``self.scheme``); this class adds the export's settings (block size, io dtype) and records
    how every tensor is stored for the metadata.
    """

    def __init__(self, mode: Optional[str] = None, block_size: int = DEFAULT_BLOCK_SIZE, io_dtype: str = "float32"):
        self.scheme = SCHEMES[normalize_mode(mode)]
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise QuantizationError(f"block_size must be a positive integer, got {block_size!r}")
        if io_dtype not in IO_DTYPES:
            raise QuantizationError(f"io_dtype must be one of {IO_DTYPES}, got {io_dtype!r}")
        if io_dtype != "float32" and self.scheme.compute_dtype != io_dtype:
            raise QuantizationError(f"io_dtype={io_dtype!r} needs quantize='fp16' (got quantize={self.mode!r})")
        self.block_size = int(block_size)
        self.io_dtype = io_dtype
        self.quantized: Dict[str, dict] = {}  # stored tensor name -> how it is stored
        self.float_tensors: List[str] = []
        self.float32_states: List[str] = []

    # -- facts (the scheme's) ----------------------------------------------------------------------------
    @property
    def mode(self) -> Optional[str]:
        return self.scheme.name

    @property
    def unquantized(self) -> bool:
        """fp32: every weight stored as the model holds it."""
        return self.scheme.name is None

    @property
    def integer(self) -> bool:
        return self.scheme.integer

    @property
    def dynamic(self) -> bool:
        return self.scheme.dynamic

    @property
    def compute_dtype(self) -> str:
        """Element type of the activations that enter matrix products (and of fp16 layers' outputs)."""
        return self.scheme.compute_dtype

    @property
    def min_opset(self) -> int:
        return self.scheme.min_opset

    @property
    def min_ir_version(self) -> int:
        return self.scheme.min_ir_version

    @property
    def min_onnxruntime(self) -> str:
        return self.scheme.min_onnxruntime

    def keep_float32_states(self, names: Sequence[str]) -> None:
        """Record state tensors a quantized export keeps float32 (the metadata's ``float32_states``)."""
        if not self.unquantized:
            self.float32_states.extend(names)

    def recipe(self) -> Optional[dict]:
        """The ``quantization`` document of the model metadata (None for fp32)."""
        s = self.scheme
        if self.unquantized:
            return None
        return {"mode": s.name, "contract_version": CONTRACT_VERSION, "weights": s.weights_doc,
                "granularity": s.granularity, "block_size": self.block_size if s.blocked else None,
                "scale_dtype": "float32" if s.integer else None, "activations": s.activations_doc,
                "compute_dtype": s.compute_dtype, "io_dtype": self.io_dtype,
                "tensors": self.quantized, "float_tensors": list(self.float_tensors),
                "float32_states": list(self.float32_states),
                "min_onnxruntime": s.min_onnxruntime}

    # -- storing weights ---------------------------------------------------------------------------------
    def _add(self, g, name: str, stored) -> tuple:
        """Add a scheme's ``store`` result as initializers; returns (stored name, scale name or None)."""
        values, scale, entry = stored
        stored_name = g.weight(name, values)
        scale_name = None if scale is None else g.weight(f"{name}_scale", scale)
        if entry is not None:
            self.quantized[stored_name] = {**entry, "scale": scale_name} if "scale" in entry else entry
        return stored_name, scale_name

    def _store_matrix(self, g, name: str, w: np.ndarray, channel_axis: int) -> tuple:
        """Add matrix ``w`` as stored by this mode; returns (stored name, scale name or None)."""
        return self._add(g, name, self.scheme.store(name, np.asarray(w, dtype=np.float32), channel_axis,
                                                    self.block_size))

    def store_stacked(self, g, name: str, w: np.ndarray) -> Weight:
        """Add stacked matrices ``w`` [..., K, N] (each slice [K, N] input-major) as this mode stores a matrix,
        slice by slice: int8 scale [..., N] (per output channel of each slice), int4 scale [..., ceil(K / bs), N]
        (blocks of bs = block_size along K), fp16 float16. Returns (stored name, scale name or None).

        The op contract for a stacked matrix input: the scale has the matrix's shape with K dropped (int8) or
        cut into blocks (int4); slice ``w[j]`` with scale ``scale[j]`` follows the [K, N] rule.
        """
        return self._add(g, name, self.scheme.store_stacked(name, np.asarray(w, dtype=np.float32), self.block_size))

    def dequantize_stacked(self, nb, w: str, scale: str, name: str) -> str:
        """float32 stacked matrices [..., K, N] from ``store_stacked``'s int8 / int4 storage."""
        return self.scheme.dequantize_stacked(nb, w, scale, self.block_size, name)

    def param(self, g, name: str, array: np.ndarray, dtype: Optional[str] = None) -> str:
        """A float parameter kept float (biases, per-gate vectors): ``dtype``, default the compute dtype."""
        dtype = dtype or self.compute_dtype
        a = np.asarray(array, dtype=np.float32)
        if dtype == "float16":
            a = to_fp16(name, a)
        elif not self.unquantized:
            check_finite(name, a)
        stored = g.weight(name, a)
        if not self.unquantized:
            self.float_tensors.append(stored)
        return stored

    # -- standard-op layers (main graph) ----------------------------------------------------------------
    def _cast(self, g, x: str, suffix: str, to: int) -> str:
        """``x`` cast between float32 and a float16 compute dtype (``x`` itself when the compute dtype is float32)."""
        return g.op("Cast", [x], name=f"{x}.{suffix}", to=to) if self.compute_dtype == "float16" else x

    def to_compute(self, g, x: str) -> str:
        """``x`` (float32) as the compute dtype: a Cast to float16 in fp16 mode, else ``x`` itself."""
        return self._cast(g, x, "to_fp16", TensorProto.FLOAT16)

    def to_float32(self, g, x: str) -> str:
        return self._cast(g, x, "to_fp32", TensorProto.FLOAT)

    def from_io(self, g, x: str) -> str:
        """A float data input (io dtype) as the compute dtype."""
        return self.to_compute(g, x) if self.io_dtype == "float32" else x

    def to_io(self, g, y: str, out: str, compute: bool = True) -> str:
        """Write ``y`` (the compute dtype if ``compute``, else float32) to the data output ``out`` (io dtype)."""
        src = self.compute_dtype if compute else "float32"
        if src == self.io_dtype:
            return g.op("Identity", [y], [out], name=out)
        to = TensorProto.FLOAT16 if self.io_dtype == "float16" else TensorProto.FLOAT
        return g.op("Cast", [y], [out], name=out, to=to)

    def matmul_weight(self, g, name: str, weight: np.ndarray) -> str:
        """The float tensor a standard MatMul reads for ``weight`` [K, N] (compute dtype; weight-only dequant)."""
        stored, scale = self._store_matrix(g, name, weight, channel_axis=1)
        if scale is None:
            return stored
        return self.scheme.dequantize(g, stored, scale, self.block_size, name=name)

    def linear(self, g, name: str, x: str, weight: np.ndarray, bias: Optional[np.ndarray] = None,
               opset: int = 17, out: Optional[str] = None) -> str:
        """``x @ weight + bias`` for a standard-op layer; ``weight`` [K, N] input-major (stored as
        ``<name>.weight_t``), ``x`` in the compute dtype; returns the result (named ``out`` if given) in the
        compute dtype. int8-dynamic quantizes ``x`` per row on the fly."""
        last = {"outputs": [out]} if out else {}
        if self.dynamic:
            stored, scale = self._store_matrix(g, f"{name}.weight_t", weight, channel_axis=1)
            y = dynamic_matmul(g, x, unsigned_weight(g, stored, f"{stored}_u8"), scale, opset, name=f"{name}.MatMul")
        else:
            w = self.matmul_weight(g, f"{name}.weight_t", weight)
            y = g.op("MatMul", [x, w], name=f"{name}.MatMul", **({} if bias is not None else last))
        if bias is None:
            return g.op("Identity", [y], [out], name=out) if out and self.dynamic else y
        return g.op("Add", [y, self.param(g, f"{name}.bias", bias)], name=name, **last)

    def embedding(self, g, name: str, table: np.ndarray, ids: str) -> str:
        """Rows of ``table`` [V, E] for token ids ``ids``, in the compute dtype (quantized per row; only the rows
        used are dequantized, after the Gather)."""
        stored, scale = self._store_matrix(g, f"{name}.weight", table, channel_axis=0)
        if not self.integer:
            return g.op("Gather", [stored, ids], name=name, axis=0)
        if self.scheme.packed:
            return self._packed_rows(g, name, stored, scale, np.shape(table)[1], ids)
        rows = g.op("Gather", [stored, ids], name=f"{name}.rows", axis=0)
        row_scale = g.op("Gather", [scale, ids], name=f"{name}.row_scale", axis=0)
        row_scale = g.op("Unsqueeze", [row_scale, g.ints([-1])], name=f"{name}.row_scale_col")
        return g.op("Mul", [g.op("Cast", [rows], name=f"{name}.rows_f", to=TensorProto.FLOAT), row_scale], name=name)

    def stacked_weight(self, g, name: str, w: np.ndarray) -> Weight:
        """Stacked matrices ``w`` [..., K, N] of a standard-op layer (head-wise projections) as its MatMul reads
        them: float32 in fp32 and the weight-only modes, float16 in fp16, ``unsigned_weight`` of the int8 storage
        with its scale in int8-dynamic.

        Weight-only modes dequantize with ops onnxruntime folds into one float32 initializer when it loads the
        file (int8: Cast * scale; int4: its packed nibbles unpacked, times the block scales, ``dequantize_int4``).
        """
        stored, scale = self.store_stacked(g, name, w)
        if self.scheme.weight_only:
            return self.dequantize_stacked(g, stored, scale, f"{name}_dq"), None
        if self.dynamic:
            return unsigned_weight(g, stored, f"{name}_u8"), scale
        return stored, scale

    def _packed_rows(self, g, name: str, stored: str, scale: str, e: int, ids: str) -> str:
        """The rows for ``ids`` of a table [V, E] stored packed (``pack_int4``: uint8 [V, ceil(E / 2)], scale
        [V, ceil(E / block_size)], blocks along E), dequantized. The rows' values and their block scales are both
        spread to E columns by Gathers along the last axis (no Reshape: shape inference keeps the rank)."""
        rows = g.op("Gather", [stored, ids], name=f"{name}.rows", axis=0)  # [..., ceil(E / 2)] uint8
        qf = unpack_int4(g, rows, e, name)  # [..., E]
        row_scale = g.op("Gather", [scale, ids], name=f"{name}.row_scale", axis=0)  # [..., ceil(E / bs)]
        block_of_col = g.op("Div", [_range(g, e, f"{name}.cols_e"),
                                    _constant(g, np.array(self.block_size, np.int64), f"{name}.bs")],
                            name=f"{name}.block_of_col")
        col_scale = g.op("Gather", [row_scale, block_of_col], name=f"{name}.col_scale", axis=-1)  # [..., E]
        return g.op("Mul", [qf, col_scale], name=name)

    # -- custom ops ----------------------------------------------------------------------------------------
    def scale_inputs(self, matrices: Sequence[str]) -> List[str]:
        """Formal names of the appended scale inputs of a custom op (empty unless int8/int8-dynamic/int4)."""
        return [scale_input(m) for m in matrices] if self.integer else []

    def op_weights(self, g, prefix: str, weights: Dict[str, np.ndarray], matrices: Sequence[str],
                   float_dtype: str = "float32") -> List[str]:
        """Initializers for one custom node's weight inputs in contract order: every entry of ``weights`` in
        order (``matrices`` [K, N], or stacked [..., K, N] as ``store_stacked`` stores them, stored per mode, the
        rest as ``float_dtype`` parameters), then the scale of each matrix in ``matrices`` order (integer modes)."""
        unknown = [m for m in matrices if m not in weights]
        if unknown:
            raise KeyError(f"matrices {unknown} are not among the weights {list(weights)}")
        names, scales = [], {}
        for k, v in weights.items():
            if k in matrices:
                stored, scales[k] = (self.store_stacked(g, prefix + k, v) if np.ndim(v) > 2 else
                                     self._store_matrix(g, prefix + k, v, channel_axis=1))
            else:
                stored = self.param(g, prefix + k, v, float_dtype)
            names.append(stored)
        return names + [scales[m] for m in matrices if scales[m] is not None]

    def op_attributes(self) -> Dict[str, object]:
        """Attributes of a quantized custom node (none for fp32)."""
        if self.unquantized:
            return {}
        return {"quant_mode": self.mode, "block_size": self.block_size if self.scheme.blocked else 0}

    def declare_attributes(self, function: onnx.FunctionProto) -> onnx.FunctionProto:
        """Declare ``op_attributes`` on a custom op's FunctionProto (the body does not read them)."""
        function.attribute.extend(sorted(self.op_attributes()))
        return function

    def body_weight(self, nb, w: str, scale: Optional[str]) -> str:
        """Inside a function body: the weight a MatMul reads (int8/int4 dequantized; else ``w``). int8-dynamic
        gives the uint8 form of the int8 weight for MatMulInteger (``unsigned_weight``): use ``body_matmul``."""
        return self.scheme.product_weight(nb, w, scale, self.block_size, name=f"{w}_dq", stacked=False)

    def body_stacked(self, nb, w: str, scale: Optional[str], name: str) -> str:
        """Inside a function body: the stacked matrices [..., K, N] a MatMul reads, made once per call (weight-only
        modes dequantized, int8-dynamic as ``unsigned_weight``; else ``w``)."""
        return self.scheme.product_weight(nb, w, scale, self.block_size, name=name, stacked=True)

    def body_matmul(self, nb, x: str, w: str, scale: Optional[str], opset: int, name: str,
                    x_is_compute: bool = False) -> str:
        """``x @ W`` inside a function body, returned as float32. ``w`` comes from ``body_weight`` (or
        ``body_stacked``); ``x`` is float32 (cast to float16 in fp16 mode) unless ``x_is_compute`` says it already
        is the compute dtype."""
        return self.scheme.matmul(nb, x, w, scale, opset, name, x_is_compute)


def quantize_stacked(name: str, w: np.ndarray, bits: int, block_size: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Stacked matrices w [..., K, N] (non-empty) quantized slice by slice: (values [..., K, N], scale [..., N]
    per output channel, or [..., ceil(K / block_size), N] in blocks along K)."""
    *lead, k, n = w.shape
    side_by_side = np.moveaxis(w, -2, 0).reshape(k, -1)  # [K, slices * N]: every slice's channels as columns
    wq, scale = quantize_symmetric(name, side_by_side, bits, channel_axis=1, block_size=block_size)
    wq = np.moveaxis(wq.reshape(k, *lead, n), 0, -2)
    if block_size is None:
        return wq, scale.reshape(*lead, n)
    return wq, np.moveaxis(scale.reshape(-1, *lead, n), 0, -2)


def pack_int4(q: np.ndarray) -> np.ndarray:
    """int4 values q [..., W] (in [-8, 7]) as uint8 [..., ceil(W / 2)]: two per byte, low nibble first, each
    stored as q + 8 (an odd W gets a padding nibble 8, i.e. 0)."""
    nibbles = np.full((*q.shape[:-1], q.shape[-1] + q.shape[-1] % 2), 8, np.uint8)
    nibbles[..., :q.shape[-1]] = q.astype(np.int8) + 8
    return nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)


def _constant(g, value: np.ndarray, name: str) -> str:
    return g.op("Constant", [], name=name, value=numpy_helper.from_array(value))


def _range(g, n, name: str) -> str:
    """0, 1, ..., n - 1 (int64) for an int ``n`` or the name of a 0-d int64 tensor."""
    end = n if isinstance(n, str) else _constant(g, np.array(n, np.int64), f"{name}_end")
    return g.op("Range", [_constant(g, np.array(0, np.int64), f"{name}_start"), end,
                          _constant(g, np.array(1, np.int64), f"{name}_step")], name=name)


def unpack_int4(g, packed: str, width, name: str) -> str:
    """float32 [..., width] int4 values from ``pack_int4`` storage [..., ceil(width / 2)]: value j is nibble j % 2
    (low first) of byte j // 2, less 8. Each value's byte is Gathered along the last axis, then BitShift and
    BitwiseAnd (ops onnxruntime has for uint8 since opset 18) pick its nibble: no Reshape, so shape inference
    keeps the rank (onnxruntime 1.15 needs it inside Scan bodies) and an empty stack unpacks too. ``width`` is an
    int, or the name of a 0-d int64 tensor holding it (a function body's). Only Constant nodes, so it works in
    function bodies too."""
    cols = _range(g, width, f"{name}.cols")
    two = _constant(g, np.array(2, np.int64), f"{name}.two")
    byte_of = g.op("Div", [cols, two], name=f"{name}.byte_of")
    shift = g.op("Cast", [g.op("Mul", [g.op("Mod", [cols, two], name=f"{name}.high_nibble"),
                                       _constant(g, np.array(4, np.int64), f"{name}.four")], name=f"{name}.bits")],
                 name=f"{name}.shift", to=TensorProto.UINT8)
    byte = g.op("Gather", [packed, byte_of], name=f"{name}.bytes", axis=-1)  # [..., width] uint8
    nibbles = g.op("BitwiseAnd", [g.op("BitShift", [byte, shift], name=f"{name}.shifted", direction="RIGHT"),
                                  _constant(g, np.array(15, np.uint8), f"{name}.low_mask")], name=f"{name}.nibbles")
    return g.op("Sub", [g.op("Cast", [nibbles], name=f"{name}.q_f", to=TensorProto.FLOAT),
                        _constant(g, np.array(8, np.float32), f"{name}.offset")], name=f"{name}.q")


def dequantize_int4(nb, packed: str, scale: str, block_size: int, name: str) -> str:
    """float32 matrices [..., K, N] from int4 in ``pack_int4`` storage: ``packed`` uint8 [..., K, ceil(N / 2)],
    ``scale`` float32 [..., ceil(K / block_size), N]; W[..., k, n] = q[..., k, n] * scale[..., k // block_size, n].

    N is the scale's last dimension and K the packed tensor's next-to-last, read from the shapes (a function
    body serves matrices of several shapes), so any rank and an empty stack work. Every op reads only the two
    tensors: where they are initializers (every exported file), onnxruntime folds this into one float32
    initializer when it loads the file.
    """
    def dim(x, start, what):  # dimension start (< 0) of x as a 0-d int64 tensor
        end = {"end": start + 1} if start < -1 else {}
        return nb.op("Squeeze", [nb.op("Shape", [x], name=f"{name}.{what}_shape", start=start, **end)],
                     name=f"{name}.{what}")

    qf = unpack_int4(nb, packed, dim(scale, -1, "width"), name)  # [..., K, N]
    rows = _range(nb, dim(packed, -2, "k"), f"{name}.rows")
    block_of_row = nb.op("Div", [rows, _constant(nb, np.array(block_size, np.int64), f"{name}.block_size")],
                         name=f"{name}.block_of_row")
    row_scale = nb.op("Gather", [scale, block_of_row], name=f"{name}.row_scale", axis=-2)  # [..., K, N]
    return nb.op("Mul", [qf, row_scale], name=name)


def stacked_scale(nb, scale: str, name: str) -> str:
    """An int8 stacked scale [..., N] as [..., 1, N], to broadcast over the K rows of each slice."""
    return nb.op("Unsqueeze", [scale, nb.ints([-2])], name=name)


def unsigned_weight(nb, w_q: str, name: str) -> str:
    """int8 weights W_q in [-127, 127] as uint8 W_q + 128, the form int8-dynamic's MatMulInteger reads (zero point
    ZERO_POINT); stored int8, converted by ops onnxruntime folds into one uint8 initializer at load."""
    wide = nb.op("Cast", [w_q], name=f"{name}.wide", to=TensorProto.INT32)
    offset = nb.op("Constant", [], name=f"{name}.offset", value=numpy_helper.from_array(np.array(ZERO_POINT, np.int32)))
    return nb.op("Cast", [nb.op("Add", [wide, offset], name=f"{name}.shift")], name=name, to=TensorProto.UINT8)


def dynamic_matmul(nb, x: str, w_u8: str, w_scale: str, opset: int, name: str) -> str:
    """float32 ``x @ W`` with x quantized per row on the fly and W int8 per output channel, given as
    ``unsigned_weight`` (uint8 x uint8 MatMulInteger, both zero points ZERO_POINT: exact int32 sums of x_q * W_q)."""
    ax = nb.op("Abs", [x], name=f"{name}.abs")
    amax = nb.reduce("ReduceMax", ax, -1, 1, opset, name=f"{name}.amax")
    s = nb.op("Max", [nb.op("Div", [amax, nb.const(float(INT8_MAX), x)], name=f"{name}.amax_127"),
                      nb.const(ACT_SCALE_FLOOR, x)], name=f"{name}.x_scale")
    r = nb.op("Round", [nb.op("Div", [x, s], name=f"{name}.x_over_s")], name=f"{name}.round")
    # x_q = clip(r, -127, 127), as uint8 x_q + 128 with zero point 128 (exact; module docstring)
    shifted = nb.op("Add", [r, nb.const(float(ZERO_POINT), x)], name=f"{name}.shift")
    xq = nb.op("Cast", [nb.op("Clip", [shifted, nb.const(float(ZERO_POINT - INT8_MAX), x),
                                       nb.const(float(ZERO_POINT + INT8_MAX), x)], name=f"{name}.clip")],
               name=f"{name}.x_q", to=TensorProto.UINT8)
    zero = nb.op("Constant", [], name=f"{name}.zero", value=numpy_helper.from_array(np.array(ZERO_POINT, np.uint8)))
    acc = nb.op("MatMulInteger", [xq, w_u8, zero, zero], name=f"{name}.int")
    y = nb.op("Mul", [nb.op("Cast", [acc], name=f"{name}.acc_f", to=TensorProto.FLOAT), s], name=f"{name}.row")
    return nb.op("Mul", [y, w_scale], name=name)
