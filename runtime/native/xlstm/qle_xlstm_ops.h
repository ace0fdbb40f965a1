// The sLSTM and mLSTM ops' specs, shape checks and outputs (over the op contract, qle_contract.h),
// shared by their CPU (qle_xlstm_ops.cc) and CUDA (qle_xlstm_cuda_ops.cc) registrations.
//   sLSTMCell     (x[B,4H], y[B,H], c, n, m, R[4,NH,DH,DH], b[4H]) -> y', c', n', m'
//   sLSTMSequence (x[B,T,4H], y0, c0, n0, m0, R, b) -> Y[B,T,H], y_T, c_T, n_T, m_T
//   mLSTMCell     (q[B,NH,DK], k[B,NH,DK], v[B,NH,DV], i[B,NH], f[B,NH], C[B,NH,DK,DV],
//                  n[B,NH,DK], m[B,NH,1], q_scale[], k_scale[], eps[]) -> h[B,NH,DV], C', n', m'
//   mLSTMSequence (q[B,T,NH,DK], k, v[B,T,NH,DV], i[B,T,NH], f, C0, n0, m0, q_scale, k_scale, eps)
//                  -> H[B,T,NH,DV], C_T, n_T, m_T
// Quantized sLSTM nodes (exporters/quantize.py, custom-op contract version 1): the quant_mode /
// block_size attributes and R's element type select the mode (qle_qmatrix.h): "fp16" R float16 (x
// enters no product: float32); "int8" / "int8-dynamic" R int8, R_scale [4, NH, DH] appended; "int4" R
// uint8 [4, NH, DH, ceil(DH / 2)] (int4 packed two per byte) or ONNX INT4, R_scale
// [4, NH, ceil(DH / bs), DH]. The mLSTM ops hold no weights: float32 nodes in every mode.
#pragma once

#include "qle_contract.h"
#include "qle_mlstm_args.h"

// sLSTMCell / mLSTMCell (seq false), sLSTMSequence / mLSTMSequence.
const QleOpSpec& qle_slstm_spec(bool seq);
const QleOpSpec& qle_mlstm_spec(bool seq);

// Sizes of a checked node. The cell ops have T = 1.
struct QleSlstmDims {
  int64_t B, T, NH, DH, H;  // H = NH * DH
};
struct QleMlstmDims {
  int64_t B, T, NH, DK, DV;
  float q_scale, k_scale, eps;  // the scalar inputs' values
};


// sLSTM: NH in [1, 4096], DH and H = NH * DH in [1, 2^24] (qle_shape.h), R [4, NH, DH, DH] (int4 packed:
// [4, NH, DH, ceil(DH / 2)]) and, in the integer modes, R_scale; int8-dynamic also bounds DH. Needs only
// those inputs loaded.
OrtStatusPtr qle_check_slstm_matrices(const QleOpInputs& in, long block, int64_t NH, int64_t DH);
// sLSTMCell (seq false) / sLSTMSequence: every input's shape.
OrtStatusPtr qle_check_slstm(const QleOpInputs& in, long block, bool seq, QleSlstmDims* dims);

// mLSTMCell (seq false) / mLSTMSequence: NH in [1, 4096], DK and DV in [1, 2^24] (qle_shape.h), every
// input's shape and the scalars' values (host).
OrtStatusPtr qle_check_mlstm(const QleOpInputs& in, bool seq, QleMlstmDims* dims);

// The outputs of a checked node (onnxruntime allocates them in the execution provider's memory):
//   sLSTM    Y [B, T, H] (sequence only; null for the cell), y', c', n', m' [B, H]
//   mLSTM    H [B, T, NH, DV] (cell: [B, NH, DV]), C' [B, NH, DK, DV], n' [B, NH, DK], m' [B, NH, 1]
struct QleSlstmOutputs {
  float *Y, *y, *c, *n, *m;
};
struct QleMlstmOutputs {
  float *H, *C, *n, *m;
};
QleSlstmOutputs qle_slstm_outputs(Ort::KernelContext& ctx, const QleSlstmDims& d, bool seq);
QleMlstmOutputs qle_mlstm_outputs(Ort::KernelContext& ctx, const QleMlstmDims& d, bool seq);

// The mLSTM kernels' arguments (the same struct on CPU and CUDA: the ops hold no weights).
void qle_mlstm_args(const QleOpInputs& in, const QleMlstmDims& d, const QleMlstmOutputs& o, QleMlstmArgs* a);
