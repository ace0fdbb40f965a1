// Host-side launcher of the xLSTMLargeBlock / xLSTMLargeBlockSequence CUDA kernels (qle_large_block_cuda.cu). No
// CUDA types here. Pointers are device pointers; the launcher enqueues the block's kernels on `stream` (the
// node's cudaStream_t) and returns 0 or a cudaError_t value (qle_cuda_error_string). Shapes, modes and maths are
// the CPU kernel's (qle_large_block.h); the inputs must already have been checked against the op contract.
#pragma once

#include "qle_block_cuda.h"

struct QleCudaLargeBlock {
  long B, T, E, NH, DK, DV, U;                  // T = 1 for the step op
  const float* x;                               // [B, T, E]
  const float *C, *n, *m;                       // [B, NH, DK, DV], [B, NH, DK], [B, NH, 1]
  const float *norm_mlstm_w, *norm_mlstm_b;     // [E]
  QleCudaBlockMatrix W_qkvo, W_if, W_out, W_up, W_down;
  const float *b_qkvo, *b_if;                   // [2QK + 2V], [2NH]
  const float *head_norm_w, *head_norm_b;       // [V]
  const float* b_out;                           // [E]
  const float *norm_ffn_w, *norm_ffn_b;         // [E]
  const float *b_up, *b_down;                   // [2U], [E]
  float gate_soft_cap, q_scale, eps, norm_eps;
  float* Y;                                     // [B, T, E]
  float *C_out, *n_out, *m_out;
};

int qle_cuda_large_block(void* stream, const QleCudaLargeBlock* a);
