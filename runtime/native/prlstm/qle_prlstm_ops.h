// The PR-LSTM ops' specs, shape checks and outputs (over the op contract, qle_contract.h), shared by
// their CPU (qle_prlstm_ops.cc) and CUDA (qle_prlstm_cuda_ops.cc) registrations.
//   PRLSTMStep    (x[B,D], block_h[B,K,H], block_c, prefix_h, prefix_c, count[B] int64,
//                  W_leaf[D,3H], b_leaf[3H], W_merge[2H,5H], b_merge[5H], W_unary[R,H,4H],
//                  b_unary[R,4H]) -> y[B,H], block_h', block_c', prefix_h', prefix_c', count'
//   PRLSTMSequence(x[B,T,D], ...) -> Y[B,T,H], ...
// Quantized nodes (exporters/quantize.py, custom-op contract version 1): the quant_mode / block_size
// attributes and the element types select the mode (qle_qmatrix.h):
//   (no attribute)  fp32          every input float32 (count int64)
//   "fp16"          x, W_leaf, W_merge, W_unary float16
//   "int8",         matrices int8 [..., K, N]; scales appended: W_leaf_scale [3H],
//   "int8-dynamic"                W_merge_scale [5H], W_unary_scale [R, 4H]
//   "int4"          matrices uint8 [..., K, ceil(N / 2)] (int4 packed two per byte) or ONNX INT4
//                                 [..., K, N] (files exported before the packed form); scales
//                                 W_leaf_scale [ceil(D / bs), 3H], W_merge_scale [ceil(2H / bs), 5H],
//                                 W_unary_scale [R, ceil(H / bs), 4H]
#pragma once

#include "qle_contract.h"

// PRLSTMStep (seq false) / PRLSTMSequence.
const QleOpSpec& qle_prlstm_spec(bool seq);

// Sizes of a checked node. The step op has T = 1.
struct QlePrDims {
  int64_t B, T, D, H, K, R;
};

// PR-LSTM: D and H in [1, 2^24] and R in [0, 1024] (qle_shape.h), W_leaf [D, 3H], W_merge [2H, 5H],
// W_unary [R, H, 4H] (int4 packed: the last dimension halved, rounded up) and, in the integer modes, their
// scales (exporters/quantize.py); int8-dynamic also bounds D and 2H. Needs only those inputs loaded.
OrtStatusPtr qle_check_pr_matrices(const QleOpInputs& in, long block, int64_t D, int64_t H, int64_t R);
// PRLSTMStep (seq false) / PRLSTMSequence: every input's shape, the stack depth K in [1, 62] and
// count (host) in [0, 2^63 - 1 - T].
OrtStatusPtr qle_check_prlstm(const QleOpInputs& in, long block, bool seq, QlePrDims* dims);

// The outputs of a checked node (onnxruntime allocates them in the execution provider's memory):
// Y [B, T, H] (step: [B, H]), block_h', block_c', prefix_h', prefix_c' [B, K, H], count' [B].
struct QlePrOutputs {
  float* Y;
  float *block_h, *block_c, *prefix_h, *prefix_c;
  int64_t* count;
};
QlePrOutputs qle_prlstm_outputs(Ort::KernelContext& ctx, const QlePrDims& d, bool seq);
