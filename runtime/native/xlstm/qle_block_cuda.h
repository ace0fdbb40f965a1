// The pieces every xLSTM block's CUDA launcher is composed of (qle_large_block_cuda.cu, qle_mlstm_block_cuda.cu,
// qle_slstm_block_cuda.cu), each the device counterpart of a qle_block_core.h function: the same maths in the same
// order as the scalar CPU kernels (the products in qle_qmatmul's order, the norms' sums in index order by one
// thread, the element formulas from qle_block_math.h), so a block's CUDA and CPU results are equal bit for bit.
// No CUDA types here: the op registrations and the harness compile with a plain C++ compiler. Pointers are
// device pointers; each function enqueues its kernel on `stream` (a cudaStream_t) and returns 0 or a cudaError_t
// value (qle_cuda_error_string); empty work enqueues nothing.
#pragma once

#include "qle_cuda_modes.h"

// A block's weight matrix W [K, N] as the node holds it (exporters/quantize.py): its QLE_CUDA_* storage mode
// (qle_cuda_matrix_mode), int4 block size and scales (int8 [N], int4 [ceil(K / block), N]; null in fp32 / fp16).
struct QleCudaBlockMatrix {
  int mode;
  long block;
  const void* w;
  const float* scale;
  long K, N;
};

// out[r, :] = init + A[r, :] @ W for r < M (init [N]), with the mode's arithmetic: qle_block_product.
int qle_cuda_block_product(void* stream, const QleCudaBlockMatrix& W, long M, const float* A, long lda,
                           const float* init, float* out, long ldo);

// Head-wise matrices: a stack of G NP matrices [K, N] (G projections of NP heads each), head (g, p) reading
// columns p K .. p K + K of the rows of A[g] (row stride lda[g]) and writing columns (g NP + p) N .. + N:
//   out[r, (g NP + p) N + j] = init[(g NP + p) N + j] + A[g][r, p K .. p K + K) @ W[g NP + p][:, j].
constexpr long kQleCudaMaxGroups = 4;
struct QleCudaBlockHeads {
  QleCudaBlockMatrix W;  // one head's K and N; w and scale: the whole stack's (as the node holds it)
  long G, NP;
  const float* A[kQleCudaMaxGroups];
  long lda[kQleCudaMaxGroups];
};

// The head-wise product with qle_qmatmul's arithmetic per head (dot_onto): the sLSTM block's gate projections.
int qle_cuda_block_heads_product(void* stream, const QleCudaBlockHeads& H, long M, const float* init, float* out,
                                 long ldo);

// The head-wise product with qle_headwise_product's arithmetic: int8 and int4 weights dequantized (q scale)
// before the float32 sum, fp16 inputs and sum rounded to float16, int8-dynamic as dot; the sum from 0, init
// added to it. The mLSTM block's q, k, v.
int qle_cuda_block_headwise_product(void* stream, const QleCudaBlockHeads& H, long M, const float* init, float* out,
                                    long ldo);

// out[r] = v[r] / sqrt(mean(v[r]^2) + eps) * w + b for the M rows of width E: qle_block_rms_norm.
int qle_cuda_block_rms_norm(void* stream, long M, long E, const float* v, const float* w, const float* b, float eps,
                            float* out);

// Layer norm of each of the NH heads of width D of the M rows [M, NH D] (NH 1: the whole row), scaled and shifted
// per column (w, b [NH D]); out may be v: qle_block_layer_norm.
int qle_cuda_block_layer_norm(void* stream, long M, long NH, long D, const float* v, const float* w, const float* b,
                              float eps, float* out);

// The causal conv with SiLU of B streams of T rows of width W, qle_block_causal_conv's maths: over the window
// [conv [B, KS, W]; the stream's rows of src (row stride lds)], out[b, t] = silu(sum_j window[t + 1 + j] conv_w[j]
// + conv_b) ([B T, W]), the window's last KS rows into conv_out [B, KS, W]. One thread per (stream, column).
int qle_cuda_block_causal_conv(void* stream, long B, long T, long KS, long W, const float* conv, const float* src,
                               long lds, const float* conv_w, const float* conv_b, float* out, float* conv_out);

// g = c tanh(g / c) in place, or g itself where c is 0: qle_block_soft_cap.
int qle_cuda_block_soft_cap(void* stream, long n, float c, float* g);

// Columns [c0, c0 + n) of src [M, lds] to dst [M, n]: qle_block_columns.
int qle_cuda_block_columns(void* stream, long M, const float* src, long lds, long c0, long n, float* dst);

// out = a + out: qle_block_add.
int qle_cuda_block_add(void* stream, long n, const float* a, float* out);

// out [M, U] = act(gate) z, gate and z the halves of up [M, 2U], act a QleFfnAct: qle_block_ffn_gate.
int qle_cuda_block_ffn_gate(void* stream, int act, long M, long U, const float* up, float* out);

// Thread blocks for n items of per_block each, at most 65535 (a grid's y limit): the kernels loop over the rest.
unsigned qle_cuda_block_grid(long n, long per_block);
