// The LM's mLSTM block CPU kernel (see qle_mlstm_block.h). The element-wise steps are the block core's loops
// over the block maths the CUDA kernel shares (qle_block_math.h), following the function body's formulas.
#include "qle_mlstm_block.h"

#include <vector>

#include "qle_block_core.h"
#include "qle_block_scratch.h"
#include "qle_mlstm_args.h"
#include "qle_xlstm.h"

namespace {

thread_local std::vector<float> t_scratch;

// h [M, I] <- (layer_norm(h per head) * w + b + skip x_c) silu(z); z is up's last I columns.
void gated_head_norm(const QleCpuKernels* k, const QleMlstmBlockArgs& a, long M, const float* x_c, const float* up,
                     float* h) {
  const long NH = a.NH, DH = a.DH, I = NH * DH;
  for (long r = 0; r < M; ++r) {
    float* hr = h + r * I;
    for (long hd = 0; hd < NH; ++hd)
      qle_block_layer_norm(1, 1, DH, hr + hd * DH, a.head_norm_w + hd * DH, a.head_norm_b + hd * DH, a.norm_eps,
                           hr + hd * DH);
    qle_block_skip_gate(k, I, a.skip, x_c + r * I, up + r * 2 * I + I, hr);
  }
}

}  // namespace

void qle_mlstm_block(const QleCpuKernels* k, const QleMlstmBlockArgs& a) {
  const long M = a.B * a.T, E = a.E, NH = a.NH, I = NH * a.DH;
  QleMlstmBlockScratch b;
  const size_t need = qle_mlstm_block_scratch(M, E, NH, I, nullptr, &b);
  if (t_scratch.size() < need) t_scratch.resize(need);
  qle_mlstm_block_scratch(M, E, NH, I, t_scratch.data(), &b);
  const auto [xn, up, x_c, qkv, gates, q, kk, v, ig, fg, h] = b;

  qle_block_layer_norm(M, 1, E, a.x, a.norm_w, a.norm_b, a.norm_eps, xn);
  qle_block_product(k, *a.W_up, M, xn, E, a.b_up, up, 2 * I);
  // over x_m: up's first I columns
  qle_block_causal_conv(k, a.B, a.T, a.KS, I, a.conv, up, 2 * I, a.conv_w, a.conv_b, x_c, a.conv_out);
  const float* sources[3] = {x_c, x_c, up};
  const long strides[3] = {I, I, 2 * I};
  qle_headwise_product(k, *a.W_qkv, M, sources, strides, a.b_qkv, qkv, 3 * I);
  qle_block_product(k, *a.W_if, M, qkv, 3 * I, a.b_if, gates, 2 * NH);
  qle_block_columns(M, qkv, 3 * I, 0, I, q);
  qle_block_columns(M, qkv, 3 * I, I, I, kk);
  qle_block_columns(M, qkv, 3 * I, 2 * I, I, v);
  qle_block_columns(M, gates, 2 * NH, 0, NH, ig);
  qle_block_columns(M, gates, 2 * NH, NH, NH, fg);

  QleMlstmArgs c{};
  c.B = a.B, c.T = a.T, c.NH = NH, c.DK = a.DH, c.DV = a.DH;
  c.q = q, c.k = kk, c.v = v, c.i = ig, c.f = fg, c.C = a.C, c.n = a.n, c.m = a.m;
  c.q_scale = 1.0f, c.k_scale = a.k_scale, c.eps = a.eps;
  c.Hout = h, c.C_out = a.C_out, c.n_out = a.n_out, c.m_out = a.m_out;
  qle_mlstm_streams(k, c, 0, a.B * NH);

  gated_head_norm(k, a, M, x_c, up, h);
  qle_block_product(k, *a.W_down, M, h, I, a.b_down, a.Y, E);
  qle_block_add(M * E, a.x, a.Y);
}
