// Host-side launcher of the PR-LSTM CUDA kernel (qle_prlstm_cuda.cu). No CUDA types here, so the op
// registration compiles with a plain C++ compiler. Pointers are device pointers unless marked host;
// `stream` is the node's cudaStream_t. The launcher enqueues its work on that stream and returns 0 or
// a cudaError_t value (qle_cuda_error_string). Shapes, modes and the maths are those of the CPU kernel
// (qle_prlstm.h); the inputs must already have been checked against the op contract.
#pragma once

#include <stdint.h>

#include "qle_cuda_modes.h"

// PRLSTMStep / PRLSTMSequence (the step op is T = 1, Y [B, H]).
struct QleCudaPrlstm {
  int mode;    // QLE_CUDA_*
  long block;  // int4 block size
  long B, T, D, H, K, R;
  const void* x;  // [B, T, D] float32, float16 in QLE_CUDA_F16
  const float *block_h, *block_c, *prefix_h, *prefix_c;  // [B, K, H]
  const int64_t* count_host;  // [B], host memory, each in [0, INT64_MAX - T]
  const void *W_leaf, *W_merge, *W_unary;    // [D, 3H], [2H, 5H], [R, H, 4H]; element type per mode
  int leaf_mode, merge_mode, unary_mode;     // how each is stored: `mode`, or QLE_CUDA_I4_PACKED
  const float *s_leaf, *s_merge, *s_unary;   // their scales (integer modes; null otherwise)
  const float *b_leaf, *b_merge, *b_unary;   // [3H], [5H], [R, 4H]
  float* Y;                                  // [B, T, H]
  float *block_h_out, *block_c_out, *prefix_h_out, *prefix_c_out;  // [B, K, H]
  int64_t* count_out;                                              // [B]
};

int qle_cuda_prlstm(void* stream, const QleCudaPrlstm* a);
