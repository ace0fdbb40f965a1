// The QL-LSTM ops' shape checks and outputs (over the op contract, qle_contract.h), shared by their CPU
// (qle_qllstm_ops.cc) and CUDA (qle_qllstm_cuda_ops.cc) registrations.
//   QLLSTMCell(x [B, D], h [B, H], c [B, H], W_x [D, H], W_h [H, H], bias [H], gate_scale [4, H],
//              gate_bias [4, H], alpha [] [, W_x_scale, W_h_scale]) -> (h_new, c_new)
//   QLLSTMSequence(x [B, T, D], h0, c0, ... as the cell) -> (Y [B, T, H], h_T, c_T)
// Quantized nodes (exporters/quantize.py, custom-op contract version 1): the quant_mode / block_size
// attributes and the element types of x, W_x, W_h select the mode (qle_qmatrix.h):
//   (no attribute)  fp32     every input float32, 9 inputs
//   "fp16"          x, W_x, W_h float16; products rounded to float16 like the function body
//   "int8"          W int8 [K, N], scales float32 [N] appended (inputs 9, 10)
//   "int8-dynamic"  as int8, activations quantized per row on the fly, exact int32 products
//   "int4"          W uint8 [K, ceil(N / 2)] (int4 packed two per byte) or ONNX INT4 [K, N] (files
//                   exported before the packed form), scales float32 [ceil(K / block_size), N] appended
#pragma once

#include <vector>

#include "qle_contract.h"

// QLLSTMCell (seq false) / QLLSTMSequence.
const QleOpSpec& qle_qllstm_spec(bool seq);

struct QleQllstmDims {
  int64_t B, T, D, H;  // the cell op has T = 1
};

// D and H in [1, 2^24] (qle_shape.h), W_x [D, H], W_h [H, H] (int4 packed: the last dimension halved,
// rounded up) and, in the integer modes, their scales; int8-dynamic also bounds D and H. Needs only those
// inputs loaded.
OrtStatusPtr qle_check_qllstm_weights(const QleOpInputs& in, long block, int64_t D, int64_t H);
// QLLSTMCell (seq false) / QLLSTMSequence: every input's shape.
OrtStatusPtr qle_check_qllstm(const QleOpInputs& in, long block, bool seq, QleQllstmDims* dims);

// Outputs of a checked node: Y [B, T, H] (sequence only; null for the cell), h' and c' [B, H].
struct QleQllstmOutputs {
  float *Y, *h, *c;
};
QleQllstmOutputs qle_qllstm_outputs(Ort::KernelContext& ctx, const QleQllstmDims& d, bool seq);
