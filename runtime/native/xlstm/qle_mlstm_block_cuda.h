// Host-side launcher of the mLSTMBlock / mLSTMBlockSequence CUDA kernels (qle_mlstm_block_cuda.cu). No CUDA types
// here. Pointers are device pointers; the launcher enqueues the block's kernels on `stream` (the node's
// cudaStream_t) and returns 0 or a cudaError_t value (qle_cuda_error_string). Shapes, modes and maths are the CPU
// kernel's (qle_mlstm_block.h); the inputs must already have been checked against the op contract.
#pragma once

#include "qle_block_cuda.h"

struct QleCudaMlstmBlock {
  long B, T, E, NH, DH, KS, BS;                 // I = NH DH; T = 1 for the step op
  const float* x;                               // [B, T, E]
  const float *conv, *C, *n, *m;                // [B, KS, I], [B, NH, DH, DH], [B, NH, DH, 1], [B, NH, 1, 1]
  const float *norm_w, *norm_b;                 // [E]
  QleCudaBlockMatrix W_up, W_qkv, W_if, W_down; // [E, 2I], one head of [3, I / BS, BS, BS], [3I, 2NH], [I, E]
  const float *b_up, *conv_w, *conv_b, *b_qkv;  // [2I], [KS, I], [I], [3I]
  const float *b_if, *head_norm_w, *head_norm_b, *skip, *b_down;  // [2NH], [I], [I], [I], [E]
  float k_scale, eps, norm_eps;
  float* Y;                                     // [B, T, E]
  float *conv_out, *C_out, *n_out, *m_out;
};

int qle_cuda_mlstm_block(void* stream, const QleCudaMlstmBlock* a);
