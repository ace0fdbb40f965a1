// xLSTMLarge block CPU kernel (see qle_large_block.h). The element-wise steps are loops over the block maths the
// CUDA kernel shares (qle_block_math.h; the FFN's gated SiLU the block core's lane loop), following the function
// body's formulas.
#include "qle_large_block.h"

#include <string.h>

#include <vector>

#include "qle_block_core.h"
#include "qle_block_math.h"
#include "qle_block_scratch.h"
#include "qle_mlstm_args.h"
#include "qle_xlstm.h"

namespace {

thread_local std::vector<float> t_scratch;

// h [M, NH, DV] <- sigmoid(o) * (layer_norm(h per head) * w + b); o [M, V] at stride ldo.
void gated_head_norm(long M, long NH, long DV, const float* w, const float* b, float eps, const float* o, long ldo,
                     float* h) {
  const long V = NH * DV;
  for (long r = 0; r < M; ++r)
    for (long hd = 0; hd < NH; ++hd) {
      float* x = h + r * V + hd * DV;
      float mean, std;
      qle_block_mean_std(DV, x, eps, &mean, &std);
      for (long j = 0; j < DV; ++j) {
        const long c = hd * DV + j;
        x[j] = qle_block_gated_norm(o[r * ldo + c], x[j], mean, std, w[c], b[c]);
      }
    }
}

}  // namespace

void qle_large_block(const QleCpuKernels* k, const QleLargeBlockArgs& a) {
  const long M = a.B * a.T, E = a.E, NH = a.NH, QK = NH * a.DK, V = NH * a.DV, U = a.U;
  const long P = 2 * QK + 2 * V;  // q, k, v, o
  QleLargeBlockScratch b;
  const size_t need = qle_large_block_scratch(M, E, NH, QK, V, U, nullptr, &b);
  if (t_scratch.size() < need) t_scratch.resize(need);
  qle_large_block_scratch(M, E, NH, QK, V, U, t_scratch.data(), &b);
  const auto [xn, qkvo, gates, q, kk, v, ig, fg, h, x1, up, hf] = b;

  qle_block_rms_norm(M, E, a.x, a.norm_mlstm_w, a.norm_mlstm_b, a.norm_eps, xn);
  qle_block_product(k, *a.W_qkvo, M, xn, E, a.b_qkvo, qkvo, P);
  qle_block_product(k, *a.W_if, M, xn, E, a.b_if, gates, 2 * NH);
  qle_block_soft_cap(M * 2 * NH, a.gate_soft_cap, gates);
  qle_block_columns(M, qkvo, P, 0, QK, q);
  qle_block_columns(M, qkvo, P, QK, QK, kk);
  qle_block_columns(M, qkvo, P, 2 * QK, V, v);
  qle_block_columns(M, gates, 2 * NH, 0, NH, ig);
  qle_block_columns(M, gates, 2 * NH, NH, NH, fg);

  QleMlstmArgs c{};
  c.B = a.B, c.T = a.T, c.NH = NH, c.DK = a.DK, c.DV = a.DV;
  c.q = q, c.k = kk, c.v = v, c.i = ig, c.f = fg, c.C = a.C, c.n = a.n, c.m = a.m;
  c.q_scale = a.q_scale, c.k_scale = 1.0f, c.eps = a.eps;
  c.Hout = h, c.C_out = a.C_out, c.n_out = a.n_out, c.m_out = a.m_out;
  qle_mlstm_streams(k, c, 0, a.B * NH);

  gated_head_norm(M, NH, a.DV, a.head_norm_w, a.head_norm_b, a.norm_eps, qkvo + 2 * QK + V, P, h);
  qle_block_product(k, *a.W_out, M, h, V, a.b_out, x1, E);
  qle_block_add(M * E, a.x, x1);
  qle_block_rms_norm(M, E, x1, a.norm_ffn_w, a.norm_ffn_b, a.norm_eps, xn);
  qle_block_product(k, *a.W_up, M, xn, E, a.b_up, up, 2 * U);
  qle_block_ffn_gate(k, QLE_FFN_SWISH, M, U, up, hf);  // silu(gate) z
  qle_block_product(k, *a.W_down, M, hf, U, a.b_down, a.Y, E);
  qle_block_add(M * E, x1, a.Y);
}
