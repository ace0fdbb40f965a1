// CUDA kernels for QLLSTMCell / QLLSTMSequence; per-element gate maths from qle_gates.h.
// One thread per (batch row, hidden unit): it computes that unit's dot products and gates.
// The sequence op writes the input projection into Y and overwrites Y[:, t] with h_t step by
// step (one launch per step: a step needs all of h_{t-1}).
#include <cuda_runtime.h>

#include "qle_cuda.h"
#include "qle_gates.h"

namespace {

constexpr int kThreads = 128;

// out[r, j] = bias[j] + sum_k A[r, k] * W[k, j]  (r < M, j < N; W row-major [K, N])
__global__ void project_kernel(long M, long N, long K, const float* __restrict__ A,
                               const float* __restrict__ W, const float* __restrict__ bias,
                               float* __restrict__ out) {
  const long j = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long r = blockIdx.y;
  if (j >= N || r >= M) return;
  const float* a = A + r * K;
  float s = bias[j];
  for (long k = 0; k < K; ++k) s += a[k] * W[k * N + j];
  out[r * N + j] = s;
}

// u = pre[b, j] + h_prev[b, :] @ W_h[:, j]; then the gates. Row strides are in floats.
__global__ void step_kernel(long B, long H, const float* pre, long ld_pre,
                            const float* __restrict__ h_prev, long ld_hp,
                            const float* c_prev, const float* __restrict__ W_h,
                            const float* __restrict__ gs, const float* __restrict__ gb,
                            const float* __restrict__ alpha, float* h_out, long ld_ho,
                            float* c_out) {
  const long j = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long b = blockIdx.y;
  if (j >= H || b >= B) return;
  const float* hp = h_prev + b * ld_hp;
  float u = pre[b * ld_pre + j];
  for (long k = 0; k < H; ++k) u += hp[k] * W_h[k * H + j];
  qle_cell_element(u, gs + j, gb + j, H, hp[j], c_prev[b * H + j], *alpha,
                   h_out + b * ld_ho + j, c_out + b * H + j);
}

__global__ void copy_rows_kernel(long B, long H, const float* src, long ld_src, float* dst) {
  const long j = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long b = blockIdx.y;
  if (j < H && b < B) dst[b * H + j] = src[b * ld_src + j];
}

dim3 grid_for(long cols, long rows) {
  return dim3((unsigned)((cols + kThreads - 1) / kThreads), (unsigned)rows);
}

}  // namespace

int qle_cuda_cell(void* stream, long B, long D, long H, const float* x, const float* h,
                  const float* c, const float* W_x, const float* W_h, const float* bias,
                  const float* gate_scale, const float* gate_bias, const float* alpha,
                  float* h_out, float* c_out) {
  if (B == 0 || H == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const dim3 grid = grid_for(H, B);
  project_kernel<<<grid, kThreads, 0, s>>>(B, H, D, x, W_x, bias, h_out);
  step_kernel<<<grid, kThreads, 0, s>>>(B, H, h_out, H, h, H, c, W_h, gate_scale, gate_bias,
                                        alpha, h_out, H, c_out);
  return (int)cudaGetLastError();
}

int qle_cuda_sequence(void* stream, long B, long T, long D, long H, const float* x,
                      const float* h0, const float* c0, const float* W_x, const float* W_h,
                      const float* bias, const float* gate_scale, const float* gate_bias,
                      const float* alpha, float* Y, float* h_out, float* c_out) {
  if (B == 0 || H == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (T == 0) {
    cudaMemcpyAsync(h_out, h0, sizeof(float) * B * H, cudaMemcpyDeviceToDevice, s);
    cudaMemcpyAsync(c_out, c0, sizeof(float) * B * H, cudaMemcpyDeviceToDevice, s);
    return (int)cudaGetLastError();
  }
  project_kernel<<<grid_for(H, B * T), kThreads, 0, s>>>(B * T, H, D, x, W_x, bias, Y);
  const dim3 grid = grid_for(H, B);
  const long ldy = T * H;
  for (long t = 0; t < T; ++t) {
    const float* hp = t == 0 ? h0 : Y + (t - 1) * H;
    const long ld_hp = t == 0 ? H : ldy;
    const float* cp = t == 0 ? c0 : c_out;
    float* yt = Y + t * H;
    step_kernel<<<grid, kThreads, 0, s>>>(B, H, yt, ldy, hp, ld_hp, cp, W_h, gate_scale,
                                          gate_bias, alpha, yt, ldy, c_out);
  }
  copy_rows_kernel<<<grid, kThreads, 0, s>>>(B, H, Y + (T - 1) * H, ldy, h_out);
  return (int)cudaGetLastError();
}

const char* qle_cuda_error_string(int error) {
  return cudaGetErrorString(static_cast<cudaError_t>(error));
}
