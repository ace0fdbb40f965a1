// xLSTMLarge block CPU kernel: the qlstm_edge::xLSTMLargeBlock / xLSTMLargeBlockSequence custom ops
// (qlstm_edge/families/xlstm/block_ops.py has the function bodies these match). Per batch row and step
// (QK = NH DK, V = NH DV):
//   xn = rms(x) * w_m + b_m                       rms(v) = v / sqrt(mean(v^2) + norm_eps)
//   q, k, v, o = xn @ W_qkvo + b_qkvo;  i, f = cap(xn @ W_if + b_if)   cap(g) = c tanh(g / c), or g (c = 0)
//   h, C', n', m' = the mLSTM step (qle_mlstm_streams, q_scale, k_scale 1, eps)
//   x1 = x + (sigmoid(o) (layer_norm(h per head) * w_h + b_h)) @ W_out + b_out
//   gate, z = (rms(x1) * w_f + b_f) @ W_up + b_up;  y = x1 + (silu(gate) z) @ W_down + b_down
// The products run through qle_qmatmul with the node's quantization mode; every row of a chunk (B T of
// them) goes through each product at once, only the mLSTM recurrence runs step by step.
#pragma once

#include <vector>

#include "qle_block_core.h"
#include "qle_cpu.h"

struct QleLargeBlockArgs {
  long B, T, E, NH, DK, DV, U;
  const float* x;                               // [B, T, E]
  const float *C, *n, *m;                       // [B, NH, DK, DV], [B, NH, DK], [B, NH, 1]
  const float *norm_mlstm_w, *norm_mlstm_b;     // [E]
  const QleBlockMatrix *W_qkvo, *W_if, *W_out, *W_up, *W_down;
  const float *b_qkvo, *b_if;                   // [2QK + 2V], [2NH]
  const float *head_norm_w, *head_norm_b;       // [V]
  const float* b_out;                           // [E]
  const float *norm_ffn_w, *norm_ffn_b;         // [E]
  const float *b_up, *b_down;                   // [2U], [E]
  float gate_soft_cap, q_scale, eps, norm_eps;
  float* Y;                                     // [B, T, E]
  float *C_out, *n_out, *m_out;
};

void qle_large_block(const QleCpuKernels* k, const QleLargeBlockArgs& a);
