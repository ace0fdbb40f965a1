// The sLSTM block CPU kernel (see qle_slstm_block.h). The element-wise steps are the block core's loops over
// the block maths the CUDA kernel shares (qle_block_math.h: the FFN's activations too), following the function
// body's formulas.
#include "qle_slstm_block.h"

#include <vector>

#include "qle_block_core.h"
#include "qle_block_scratch.h"
#include "qle_xlstm.h"

namespace {

thread_local std::vector<float> t_scratch;

}  // namespace

void qle_slstm_block(const QleCpuKernels* k, const QleSlstmBlockArgs& a) {
  const long M = a.B * a.T, E = a.E, NH = a.NH, DH = E / NH, U = a.U;
  QleSlstmBlockScratch b;
  const size_t need = qle_slstm_block_scratch(M, E, U, nullptr, &b);
  if (t_scratch.size() < need) t_scratch.resize(need);
  qle_slstm_block_scratch(M, E, U, t_scratch.data(), &b);
  const auto [xn, xc, wx, y, x1, up, hf] = b;

  qle_block_layer_norm(M, 1, E, a.x, a.norm_w, a.norm_b, a.norm_eps, xn);
  qle_block_causal_conv(k, a.B, a.T, a.KS, E, a.conv, xn, E, a.conv_w, a.conv_b, xc, a.conv_out);
  for (long g = 0; g < 4; ++g)
    for (long h = 0; h < NH; ++h) {
      const long c = g * E + h * DH;
      qle_qmatmul(k, a.W_gates[g * NH + h], M, (g < 2 ? xc : xn) + h * DH, E, a.b_gates + c, 0, wx + c, 4 * E);
    }

  QleSlstmArgs s{};
  s.B = a.B, s.T = a.T, s.NH = NH, s.DH = DH;
  s.x = wx, s.y = a.y, s.c = a.c, s.n = a.n, s.m = a.m, s.R = a.R, s.b = a.b;
  s.Y = y, s.y_out = a.y_out, s.c_out = a.c_out, s.n_out = a.n_out, s.m_out = a.m_out;
  qle_slstm_rows(k, s, 0, a.B);

  qle_block_layer_norm(M, NH, DH, y, a.group_norm_w, a.group_norm_b, a.norm_eps, x1);
  qle_block_add(M * E, a.x, x1);
  qle_block_layer_norm(M, 1, E, x1, a.ffn_norm_w, a.ffn_norm_b, a.norm_eps, xn);
  qle_block_product(k, *a.W_up, M, xn, E, a.b_up, up, 2 * U);
  qle_block_ffn_gate(k, a.ffn_act, M, U, up, hf);
  qle_block_product(k, *a.W_down, M, hf, U, a.b_down, a.H, E);
  qle_block_add(M * E, x1, a.H);
}
