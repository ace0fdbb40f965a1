// Host-side launchers of the sLSTM and mLSTM CUDA kernels (qle_xlstm_cuda.cu). No CUDA types here, so
// the op registration compiles with a plain C++ compiler. Pointers are device pointers; `stream` is the
// node's cudaStream_t. Each launcher enqueues its work on that stream and returns 0 or a cudaError_t
// value (qle_cuda_error_string). Shapes, modes and the maths are those of the CPU kernels (qle_xlstm.h);
// the inputs must already have been checked against the op contract.
#pragma once

#include "qle_cuda_modes.h"
#include "qle_mlstm_args.h"

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

int qle_cuda_slstm(void* stream, const QleCudaSlstm* a);
int qle_cuda_mlstm(void* stream, const QleMlstmArgs* a);
