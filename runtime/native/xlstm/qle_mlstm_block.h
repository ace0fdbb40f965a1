// The xLSTM LM's mLSTM block CPU kernel: the qlstm_edge::mLSTMBlock / mLSTMBlockSequence custom ops
// (qlstm_edge/families/xlstm/block_ops.py has the function bodies these match). Per batch row and step
// (I = NH DH inner size, KS conv taps, heads of BS inputs in the q/k/v projections):
//   xn = layer_norm(x) * w_n + b_n;  x_m, z = xn @ W_up + b_up
//   x_c = silu(sum_j conv_w[j] window[t + 1 + j] + conv_b)   window = [conv state; x_m], new state its last KS
//   q, k, v = heads(x_c, x_c, x_m) @ W_qkv + b_qkv           (head-wise, qle_headwise_product)
//   i, f = [q, k, v] @ W_if + b_if
//   h, C', n', m' = the mLSTM step (qle_mlstm_streams, q_scale 1, k_scale, eps)
//   y = x + ((layer_norm(h per head) * w_h + b_h + skip x_c) silu(z)) @ W_down + b_down
// The products run with the node's quantization mode; every row of a chunk (B T of them) goes through each
// product at once, only the conv window and the mLSTM recurrence run step by step.
#pragma once

#include "qle_block_core.h"
#include "qle_cpu.h"

struct QleMlstmBlockArgs {
  long B, T, E, NH, DH, KS;                     // I = NH DH
  const float* x;                               // [B, T, E]
  const float *conv, *C, *n, *m;                // [B, KS, I], [B, NH, DH, DH], [B, NH, DH, 1], [B, NH, 1, 1]
  const float *norm_w, *norm_b;                 // [E]
  const QleBlockMatrix *W_up, *W_if, *W_down;   // [E, 2I], [3I, 2NH], [I, E]
  const QleHeadwise* W_qkv;                     // [3, I / BS, BS, BS]
  const float *b_up, *conv_w, *conv_b, *b_qkv;  // [2I], [KS, I], [I], [3I]
  const float *b_if, *head_norm_w, *head_norm_b, *skip, *b_down;  // [2NH], [I], [I], [I], [E]
  float k_scale, eps, norm_eps;
  float* Y;                                     // [B, T, E]
  float *conv_out, *C_out, *n_out, *m_out;
};

void qle_mlstm_block(const QleCpuKernels* k, const QleMlstmBlockArgs& a);
