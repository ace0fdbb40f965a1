// The xLSTM LM's sLSTM block and FFN CPU kernel: the qlstm_edge::sLSTMBlock / sLSTMBlockSequence custom
// ops (qlstm_edge/families/xlstm/block_ops.py has the function bodies these match). Per batch row and
// step (E = NH DH, KS the conv kernel size):
//   xn = layer_norm(x) * w_n + b_n                         (every norm's epsilon: norm_eps)
//   xc = silu(sum_j window[j] conv_w[j] + conv_b)          window: the last KS normed inputs, oldest first
//   wx = [xc, xc, xn, xn] per head @ W_gates[g, h] + b_gates   (gates i, f, z, o)
//   y, c', n', m' = the sLSTM step (qle_slstm_rows: (wx + y_h @ R[g, h]) + b, the stabilised gates)
//   x1 = x + layer_norm(y per head) * w_g + b_g
//   gate, z = (layer_norm(x1) * w_f + b_f) @ W_up + b_up;  h = x1 + (act(gate) z) @ W_down + b_down
//   (act: the node's ffn_act, QleFfnAct)
// The products run through qle_qmatmul with the node's quantization mode (the head-wise ones per head,
// as the sLSTM cell's y @ R); every row of a chunk (B T of them) goes through each product but R's at
// once, only the sLSTM recurrence runs step by step.
#pragma once

#include <vector>

#include "qle_block_core.h"
#include "qle_cpu.h"
#include "qle_qmatrix.h"

struct QleSlstmBlockArgs {
  long B, T, E, NH, KS, U;                      // DH = E / NH
  const float* x;                               // [B, T, E]
  const float *conv, *y, *c, *n, *m;            // [B, KS, E], [B, E] each
  const float *norm_w, *norm_b;                 // [E]
  const float *conv_w, *conv_b;                 // [KS, E], [E]
  const QleQMatrix *W_gates, *R;                // 4 NH head slices [DH, DH] each, (gate g, head h) at g NH + h
  const float *b_gates, *b;                     // [4E]
  const float *group_norm_w, *group_norm_b;     // [E]
  const float *ffn_norm_w, *ffn_norm_b;         // [E]
  const QleBlockMatrix *W_up, *W_down;          // [E, 2U], [U, E]
  const float *b_up, *b_down;                   // [2U], [E]
  float norm_eps;
  int ffn_act;                                  // QleFfnAct
  float* H;                                     // [B, T, E]
  float *conv_out, *y_out, *c_out, *n_out, *m_out;
};

void qle_slstm_block(const QleCpuKernels* k, const QleSlstmBlockArgs& a);
