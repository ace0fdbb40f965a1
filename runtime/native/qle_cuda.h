// Host-side launchers of the CUDA kernels (qle_cuda.cu). No CUDA types here, so the op
// registration compiles with a plain C++ compiler. Pointers are device pointers; `stream` is
// the node's cudaStream_t. Each returns 0 or a cudaError_t value.
#pragma once

int qle_cuda_cell(void* stream, long B, long D, long H, const float* x, const float* h,
                  const float* c, const float* W_x, const float* W_h, const float* bias,
                  const float* gate_scale, const float* gate_bias, const float* alpha,
                  float* h_out, float* c_out);

int qle_cuda_sequence(void* stream, long B, long T, long D, long H, const float* x,
                      const float* h0, const float* c0, const float* W_x, const float* W_h,
                      const float* bias, const float* gate_scale, const float* gate_bias,
                      const float* alpha, float* Y, float* h_out, float* c_out);

const char* qle_cuda_error_string(int error);
