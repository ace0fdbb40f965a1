// CUDA kernels for QLLSTMCell / QLLSTMSequence in every weight mode; per-element gate maths from
// qle_qllstm_math.h (the CPU kernel's source, float instantiation; built with --fmad=false, the CPU
// build's -ffp-contract=off). One thread per (batch row, hidden unit): it computes that unit's dot
// products (with the mode's arithmetic, see dot() in qle_cuda_common.cuh) and gates. The sequence op
// writes the input projection into Y and overwrites Y[:, t] with h_t step by step (one launch per
// step: a step needs all of h_{t-1}).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "qle_qllstm_cuda.h"
#include "qle_cuda_common.cuh"
#include "qle_qllstm_math.h"

namespace {

// out[r, j] = bias[j] + A[r, :] @ W[:, j]  (r < M, j < N)
template <typename TA>
__global__ void project_kernel(long M, long N, long K, const TA* __restrict__ A, Mat W,
                               const float* __restrict__ bias, float* __restrict__ out) {
  const long j = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long r = blockIdx.y;
  if (j >= N || r >= M) return;
  out[r * N + j] = __fadd_rn(bias[j], dot(W, A + r * K, K, j, N));
}

// u = pre[b, j] + h_prev[b, :] @ W_h[:, j]; then the gates. Row strides are in floats.
__global__ void step_kernel(long B, long H, const float* pre, long ld_pre,
                            const float* __restrict__ h_prev, long ld_hp,
                            const float* c_prev, Mat W_h,
                            const float* __restrict__ gs, const float* __restrict__ gb,
                            const float* __restrict__ alpha, float* h_out, long ld_ho,
                            float* c_out) {
  const long j = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long b = blockIdx.y;
  if (j >= H || b >= B) return;
  const float* hp = h_prev + b * ld_hp;
  const float u = __fadd_rn(pre[b * ld_pre + j], dot(W_h, hp, H, j, H));
  float s[4], g[4];
  for (int k = 0; k < 4; ++k) {
    s[k] = gs[k * H + j];
    g[k] = gb[k * H + j];
  }
  qle_fm_qllstm(u, s, g, hp[j], c_prev[b * H + j], *alpha, h_out + b * ld_ho + j, c_out + b * H + j);
}

__global__ void copy_rows_kernel(long B, long H, const float* src, long ld_src, float* dst) {
  const long j = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long b = blockIdx.y;
  if (j < H && b < B) dst[b * H + j] = src[b * ld_src + j];
}

dim3 grid_for(long cols, long rows) {
  return dim3((unsigned)((cols + kThreads - 1) / kThreads), (unsigned)rows);
}

void project(cudaStream_t s, const QleCudaWeights* w, long M, long H, long D, const void* x,
             const float* bias, float* out) {
  const Mat wx{w->W_x_mode, w->block, w->W_x, w->W_x_scale};
  if (w->mode == QLE_CUDA_F16)
    project_kernel<__half><<<grid_for(H, M), kThreads, 0, s>>>(
        M, H, D, static_cast<const __half*>(x), wx, bias, out);
  else
    project_kernel<float><<<grid_for(H, M), kThreads, 0, s>>>(
        M, H, D, static_cast<const float*>(x), wx, bias, out);
}

}  // namespace

int qle_cuda_cell(void* stream, const QleCudaWeights* w, long B, long D, long H, const void* x,
                  const float* h, const float* c, const float* bias, const float* gate_scale,
                  const float* gate_bias, const float* alpha, float* h_out, float* c_out) {
  if (B == 0 || H == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const Mat wh{w->W_h_mode, w->block, w->W_h, w->W_h_scale};
  project(s, w, B, H, D, x, bias, h_out);
  step_kernel<<<grid_for(H, B), kThreads, 0, s>>>(B, H, h_out, H, h, H, c, wh, gate_scale,
                                                  gate_bias, alpha, h_out, H, c_out);
  return (int)cudaGetLastError();
}

int qle_cuda_sequence(void* stream, const QleCudaWeights* w, long B, long T, long D, long H,
                      const void* x, const float* h0, const float* c0, const float* bias,
                      const float* gate_scale, const float* gate_bias, const float* alpha,
                      float* Y, float* h_out, float* c_out) {
  if (B == 0 || H == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (T == 0) {
    cudaMemcpyAsync(h_out, h0, sizeof(float) * B * H, cudaMemcpyDeviceToDevice, s);
    cudaMemcpyAsync(c_out, c0, sizeof(float) * B * H, cudaMemcpyDeviceToDevice, s);
    return (int)cudaGetLastError();
  }
  const Mat wh{w->W_h_mode, w->block, w->W_h, w->W_h_scale};
  project(s, w, B * T, H, D, x, bias, Y);
  const dim3 grid = grid_for(H, B);
  const long ldy = T * H;
  for (long t = 0; t < T; ++t) {
    const float* hp = t == 0 ? h0 : Y + (t - 1) * H;
    const long ld_hp = t == 0 ? H : ldy;
    const float* cp = t == 0 ? c0 : c_out;
    float* yt = Y + t * H;
    step_kernel<<<grid, kThreads, 0, s>>>(B, H, yt, ldy, hp, ld_hp, cp, wh, gate_scale,
                                          gate_bias, alpha, yt, ldy, c_out);
  }
  copy_rows_kernel<<<grid, kThreads, 0, s>>>(B, H, Y + (T - 1) * H, ldy, h_out);
  return (int)cudaGetLastError();
}
