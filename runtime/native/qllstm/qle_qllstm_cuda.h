// Host-side launchers of the QL-LSTM CUDA kernels (qle_qllstm_cuda.cu). No CUDA types here, so the op
// registration compiles with a plain C++ compiler. Pointers are device pointers; `stream` is
// the node's cudaStream_t. Each returns 0 or a cudaError_t value.
#pragma once

#include "qle_cuda_modes.h"

struct QleCudaWeights {
  int mode;             // the node's
  long block;           // int4 block size (unused otherwise)
  const void* W_x;      // [D, H]
  const void* W_h;      // [H, H]
  const float* W_x_scale;  // int modes only
  const float* W_h_scale;
  int W_x_mode, W_h_mode;  // how each matrix is stored: `mode`, or QLE_CUDA_I4_PACKED
};

// x is float32, or float16 in QLE_CUDA_F16.
int qle_cuda_cell(void* stream, const QleCudaWeights* w, long B, long D, long H, const void* x,
                  const float* h, const float* c, const float* bias, const float* gate_scale,
                  const float* gate_bias, const float* alpha, float* h_out, float* c_out);

int qle_cuda_sequence(void* stream, const QleCudaWeights* w, long B, long T, long D, long H,
                      const void* x, const float* h0, const float* c0, const float* bias,
                      const float* gate_scale, const float* gate_bias, const float* alpha,
                      float* Y, float* h_out, float* c_out);
