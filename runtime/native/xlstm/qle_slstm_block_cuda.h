// Host-side launcher of the sLSTMBlock / sLSTMBlockSequence CUDA kernels (qle_slstm_block_cuda.cu). No CUDA types
// here. Pointers are device pointers; the launcher enqueues the block's kernels on `stream` (the node's
// cudaStream_t) and returns 0 or a cudaError_t value (qle_cuda_error_string). Shapes, modes and maths are the CPU
// kernel's (qle_slstm_block.h); the inputs must already have been checked against the op contract.
#pragma once

#include "qle_block_cuda.h"

struct QleCudaSlstmBlock {
  long B, T, E, NH, KS, U;                      // DH = E / NH; T = 1 for the step op
  const float* x;                               // [B, T, E]
  const float *conv, *y, *c, *n, *m;            // [B, KS, E], [B, E] each
  const float *norm_w, *norm_b;                 // [E]
  const float *conv_w, *conv_b;                 // [KS, E], [E]
  QleCudaBlockMatrix W_gates, R;                // one head slice [DH, DH] of the stacks [4, NH, DH, DH]
  const float *b_gates, *b;                     // [4E]
  const float *group_norm_w, *group_norm_b;     // [E]
  const float *ffn_norm_w, *ffn_norm_b;         // [E]
  QleCudaBlockMatrix W_up, W_down;              // [E, 2U], [U, E]
  const float *b_up, *b_down;                   // [2U], [E]
  float norm_eps;
  int ffn_act;                                  // QleFfnAct (qle_block_math.h)
  float* H;                                     // [B, T, E]
  float *conv_out, *y_out, *c_out, *n_out, *m_out;
};

int qle_cuda_slstm_block(void* stream, const QleCudaSlstmBlock* a);
