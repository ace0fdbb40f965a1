// What the xLSTM block kernels share (qle_large_block, the LM's mLSTM and sLSTM blocks): a block's weight
// matrix (packed, float32 ones also in column panels), its product over all rows of a chunk, head-wise
// (block-diagonal) matrices and their product, and the element-wise pieces every block uses: loops over the lane maths
// (qle_lanes.h; the transcendental ones per ISA lane width, as the cells'), following the function bodies'
// formulas (qlstm_edge/families/xlstm/block_ops.py).
#pragma once

#include <vector>

#include "qle_cpu.h"
#include "qle_qmatrix.h"

// One matrix of a block: the packed matrix, and for a constant float32 one its columns in panels of
// kQlePanel ([K, 128] each, contiguous; the last may be narrower), which a one-row product streams in
// order instead of reading 128 columns of every row of a wide W.
constexpr long kQlePanel = 128;
struct QleBlockMatrix {
  QleQMatrix w;
  std::vector<float> panels;  // empty: the product reads w
};

// Lays out a float32 matrix's columns in panels (m->panels); it must be packed (m->w) first.
void qle_block_panels(QleBlockMatrix* m);

// out[r, :] = init + A[r, :] @ W for r < M, W's panels one after another where it has them.
void qle_block_product(const QleCpuKernels* k, const QleBlockMatrix& W, long M, const float* A, long lda,
                       const float* init, float* out, long ldo);

// Head-wise matrices W [G, NP, K, N] (G projections of NP heads each, layers.Net.headwise's stacked form),
// as the kernels read them: int8-dynamic keeps the int8 values and their scales, every other mode the
// float32 values its function body multiplies with (float16 converted, int8 / int4 dequantized: q * scale).
struct QleHeadwise {
  QleQMode mode = QleQMode::F32;
  long G = 0, NP = 0, K = 0, N = 0;
  std::vector<float> w;      // [G, K, N, NP] (heads innermost: one product runs every head), but int8-dynamic
  std::vector<int8_t> q;     // int8-dynamic: [G, NP, K, N]
  std::vector<float> scale;  // int8-dynamic: [G, NP, N]
};

// Reads W (the raw tensor `data` of element type `type` and its scale, exporters/quantize.py's stacked
// storage) into *out. Returns an error message or nullptr.
const char* qle_headwise_pack(QleQMode mode, long block, const void* data, ONNXTensorElementDataType type,
                              const float* scale, long G, long NP, long K, long N, QleHeadwise* out);

// out[r, (g NP + p) N + j] = init[(g NP + p) N + j] + A[g][r, p K .. p K + K) @ W[g, p][:, j] for r < M, A[g]
// of row stride lda[g], with the mode's arithmetic (fp16: A and the product rounded to float16;
// int8-dynamic: each head's K inputs quantized on their own, as the function body's per-row quantization
// of [.., G, NP, 1, K]).
void qle_headwise_product(const QleCpuKernels* k, const QleHeadwise& W, long M, const float* const* A,
                          const long* lda, const float* init, float* out, long ldo);

// out[r] = v[r] / sqrt(mean(v[r]^2) + eps) * w + b for the M rows of width E.
void qle_block_rms_norm(long M, long E, const float* v, const float* w, const float* b, float eps, float* out);

// Layer norm of each of the NH heads of width D of the M rows [M, NH D] on its own (NH 1: the whole row),
// then scaled and shifted per column: out = (v - mean) / sqrt(var + eps) * w + b (w, b [NH D]).
void qle_block_layer_norm(long M, long NH, long D, const float* v, const float* w, const float* b, float eps,
                          float* out);

// g = c tanh(g / c) in place, or g itself where c is 0 (no cap).
void qle_block_soft_cap(long n, float c, float* g);

// Columns [c0, c0 + n) of src [M, lds] to dst [M, n].
void qle_block_columns(long M, const float* src, long lds, long c0, long n, float* dst);

// out = a + out (the residual: the block input first, as the body's Add).
void qle_block_add(long n, const float* a, float* out);

// The causal conv with SiLU of B streams of T rows of width W: over the window [conv [B, KS, W]; the stream's
// rows of src (row stride lds)], out[b, t] = silu(sum_j window[t + 1 + j] conv_w[j] + conv_b) ([B T, W]), and
// the window's last KS rows into conv_out [B, KS, W].
void qle_block_causal_conv(const QleCpuKernels* k, long B, long T, long KS, long W, const float* conv,
                           const float* src, long lds, const float* conv_w, const float* conv_b, float* out,
                           float* conv_out);

// The mLSTM block's output gate of one row of n: h = (h + skip x_c) silu(z).
void qle_block_skip_gate(const QleCpuKernels* k, long n, const float* skip, const float* x_c, const float* z,
                         float* h);

// A gated FFN's activation over M rows: out [M, U] = act(gate) z, gate and z the halves of up [M, 2U], act a
// QleFfnAct (qle_block_math.h).
void qle_block_ffn_gate(const QleCpuKernels* k, int act, long M, long U, const float* up, float* out);
