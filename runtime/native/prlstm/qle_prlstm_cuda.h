// Host-side launchers of the PR-LSTM and xLSTM CUDA kernels (qle_family_cuda.cu) and their op
// registration (qle_family_cuda_ops.cc). No CUDA types here, so the registration compiles with a
// plain C++ compiler.
// Pointers are device pointers unless marked host; `stream` is the node's cudaStream_t. Each
// launcher enqueues its work on that stream and returns 0 or a cudaError_t value
// (qle_cuda_error_string). Shapes, modes and the maths are those of the CPU kernels
// (qle_prlstm.h, qle_xlstm.h); the inputs must already have been checked against the op contract.
// Compile-checked only: no GPU was available where these kernels were written.
#pragma once

#include <stdint.h>

#include <vector>

#include "qle_qllstm_cuda.h"
#include "qle_mlstm_args.h"  // QLE_CUDA_* weight modes, qle_cuda_error_string

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

// sLSTMCell (Y null, T = 1) / sLSTMSequence.
struct QleCudaSlstm {
  int mode;                      // how R is stored (QLE_CUDA_I4_PACKED for int4 packed two per byte)
  long block;
  long B, T, NH, DH;             // H = NH * DH
  const float* x;                // [B, T, 4H]
  const float *y, *c, *n, *m;    // [B, H]
  const void* R;                 // [4, NH, DH, DH], element type per mode
  const float* R_scale;          // integer modes: [4, NH, DH] or [4, NH, ceil(DH / bs), DH]; else null
  const float* b;                // [4H]
  float* Y;                      // [B, T, H], or null
  float *y_out, *c_out, *n_out, *m_out;  // [B, H]
};

int qle_cuda_prlstm(void* stream, const QleCudaPrlstm* a);
int qle_cuda_slstm(void* stream, const QleCudaSlstm* a);
int qle_cuda_mlstm(void* stream, const QleMlstmArgs* a);

// Registration (qle_family_cuda_ops.cc, built with QLE_WITH_CUDA) -------------------------------
struct OrtCustomOp;

// Appends PRLSTMStep, PRLSTMSequence, sLSTMCell, sLSTMSequence, mLSTMCell and mLSTMSequence for
// CUDAExecutionProvider (static objects, valid for the life of the process).
void qle_family_cuda_ops(std::vector<const OrtCustomOp*>* out);
// Appends the names of those ops.
void qle_family_cuda_op_names(std::vector<const char*>* out);
// Number of Compute calls of those ops in this process.
unsigned long long qle_family_cuda_compute_calls();
