// The xLSTM block kernels' CUDA pieces (qle_block_cuda.h). Threads split a product's outputs and a norm's
// elements; every sum runs in one thread, in the CPU kernels' order. Built with --fmad=false, as every kernel
// sharing maths with the CPU.
#include <cuda_runtime.h>

#include "qle_block_cuda.h"
#include "qle_block_math.h"
#include "qle_cuda_common.cuh"

namespace {

// Rows r over blockIdx.y, outputs j over x.
__global__ void __launch_bounds__(kThreads)
    product_kernel(Mat W, long M, long K, long N, const float* A, long lda, const float* init, float* out, long ldo) {
  const long j = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= N) return;
  for (long r = blockIdx.y; r < M; r += gridDim.y) out[r * ldo + j] = dot_onto(W, init[j], A + r * lda, K, j, N);
}

// qle_headwise_product's sum of one output: the weights dequantized first (q scale, as the CPU packs them).
__device__ float dequantized_onto(const Mat& m, float init, const float* a, long K, long j, long N) {
  if (m.mode == QLE_CUDA_I8_DYNAMIC) return init + dot(m, a, K, j, N);
  const bool f16 = m.mode == QLE_CUDA_F16;
  float acc = 0.0f;
  for (long k = 0; k < K; ++k) {
    float w = weight(m, k, j, N);
    if (int4_mode(m.mode)) w = w * m.scale[k / m.block * N + j];
    else if (m.mode == QLE_CUDA_I8) w = w * m.scale[j];
    acc += (f16 ? __half2float(__float2half_rn(a[k])) : a[k]) * w;
  }
  return init + (f16 ? __half2float(__float2half_rn(acc)) : acc);
}

// Rows r over blockIdx.y, the G NP N output columns over x.
template <bool kDequantized>
__global__ void __launch_bounds__(kThreads)
    heads_kernel(QleCudaBlockHeads H, long M, const float* init, float* out, long ldo) {
  const long K = H.W.K, N = H.W.N, o = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= H.G * H.NP * N) return;
  const long head = o / N, j = o % N, g = head / H.NP, p = head % H.NP;
  const Mat m = slice(Mat{H.W.mode, H.W.block, H.W.w, H.W.scale}, head, K, N);
  for (long r = blockIdx.y; r < M; r += gridDim.y) {
    const float* a = H.A[g] + r * H.lda[g] + p * K;
    out[r * ldo + o] = kDequantized ? dequantized_onto(m, init[o], a, K, j, N) : dot_onto(m, init[o], a, K, j, N);
  }
}

// One thread block per (row, head): thread 0 takes the statistics, every thread its elements.
__global__ void __launch_bounds__(kThreads) layer_norm_kernel(long M, long NH, long D, const float* v, const float* w,
                                                              const float* b, float eps, float* out) {
  __shared__ float mean, std;
  for (long s = blockIdx.x; s < M * NH; s += gridDim.x) {
    const float* x = v + s * D;
    const long c0 = s % NH * D;
    if (threadIdx.x == 0) qle_block_mean_std(D, x, eps, &mean, &std);
    __syncthreads();
    for (long j = threadIdx.x; j < D; j += blockDim.x)
      out[s * D + j] = qle_block_normed(x[j], mean, std, w[c0 + j], b[c0 + j]);
    __syncthreads();  // mean and std are rewritten for the next head
  }
}

// One thread per (stream b, column c), its T steps in order.
__global__ void __launch_bounds__(kThreads)
    causal_conv_kernel(long B, long T, long KS, long W, const float* conv, const float* src, long lds,
                       const float* conv_w, const float* conv_b, float* out, float* conv_out) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < B * W; i += (long)gridDim.x * blockDim.x) {
    const long b = i / W, c = i % W;
    const float* state = conv + b * KS * W + c;
    const float* rows = src + b * T * lds + c;
    auto window = [&](long r) { return r < KS ? state[r * W] : rows[(r - KS) * lds]; };  // window row r, column c
    for (long t = 0; t < T; ++t) {
      float s = 0.0f;
      for (long j = 0; j < KS; ++j) s += window(t + 1 + j) * conv_w[j * W + c];
      out[(b * T + t) * W + c] = qle_block_silu(s + conv_b[c]);
    }
    for (long r = 0; r < KS; ++r) conv_out[(b * KS + r) * W + c] = window(T + r);
  }
}

template <bool kDequantized>
int heads_product(void* stream, const QleCudaBlockHeads& H, long M, const float* init, float* out, long ldo) {
  const long n = H.G * H.NP * H.W.N;
  if (M == 0 || n == 0) return 0;
  const dim3 blocks((unsigned)((n + kThreads - 1) / kThreads), qle_cuda_block_grid(M, 1));
  heads_kernel<kDequantized><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(H, M, init, out, ldo);
  return (int)cudaGetLastError();
}

// One thread block per row: thread 0 sums, every thread scales.
__global__ void __launch_bounds__(kThreads)
    rms_norm_kernel(long M, long E, const float* v, const float* w, const float* b, float eps, float* out) {
  __shared__ float rms;
  for (long r = blockIdx.x; r < M; r += gridDim.x) {
    const float* x = v + r * E;
    if (threadIdx.x == 0) rms = qle_block_rms(E, x, eps);
    __syncthreads();
    for (long j = threadIdx.x; j < E; j += blockDim.x) out[r * E + j] = qle_block_rms_scaled(x[j], rms, w[j], b[j]);
    __syncthreads();  // rms is rewritten for the next row
  }
}

__global__ void __launch_bounds__(kThreads) soft_cap_kernel(long n, float c, float* g) {
  for (long j = (long)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += (long)gridDim.x * blockDim.x)
    g[j] = qle_block_cap(g[j], c);
}

__global__ void __launch_bounds__(kThreads)
    columns_kernel(long M, const float* src, long lds, long c0, long n, float* dst) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < M * n; i += (long)gridDim.x * blockDim.x)
    dst[i] = src[i / n * lds + c0 + i % n];
}

__global__ void __launch_bounds__(kThreads) add_kernel(long n, const float* a, float* out) {
  for (long j = (long)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += (long)gridDim.x * blockDim.x)
    out[j] = a[j] + out[j];
}

// act(gate) z into out [M, U] from up [M, 2U] (gate then z).
__global__ void __launch_bounds__(kThreads) ffn_gate_kernel(int act, long M, long U, const float* up, float* out) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < M * U; i += (long)gridDim.x * blockDim.x) {
    const long r = i / U, j = i % U;
    out[i] = qle_block_gated_ffn(act, up[r * 2 * U + j], up[r * 2 * U + U + j]);
  }
}

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace

unsigned qle_cuda_block_grid(long n, long per_block) {
  const long g = (n + per_block - 1) / per_block;
  return (unsigned)(g < 65535 ? g : 65535);
}

int qle_cuda_block_product(void* stream, const QleCudaBlockMatrix& W, long M, const float* A, long lda,
                           const float* init, float* out, long ldo) {
  if (M == 0 || W.N == 0) return 0;
  // x: N / kThreads, at most 2^24 / 128 (a grid's x limit is 2^31 - 1); y: rows, looped over past 65535
  const dim3 blocks((unsigned)((W.N + kThreads - 1) / kThreads), qle_cuda_block_grid(M, 1));
  product_kernel<<<blocks, kThreads, 0, as_stream(stream)>>>(Mat{W.mode, W.block, W.w, W.scale}, M, W.K, W.N, A, lda,
                                                             init, out, ldo);
  return (int)cudaGetLastError();
}

int qle_cuda_block_heads_product(void* stream, const QleCudaBlockHeads& H, long M, const float* init, float* out,
                                 long ldo) {
  return heads_product<false>(stream, H, M, init, out, ldo);
}

int qle_cuda_block_headwise_product(void* stream, const QleCudaBlockHeads& H, long M, const float* init, float* out,
                                    long ldo) {
  return heads_product<true>(stream, H, M, init, out, ldo);
}

int qle_cuda_block_layer_norm(void* stream, long M, long NH, long D, const float* v, const float* w, const float* b,
                              float eps, float* out) {
  if (M * NH == 0) return 0;
  layer_norm_kernel<<<qle_cuda_block_grid(M * NH, 1), kThreads, 0, as_stream(stream)>>>(M, NH, D, v, w, b, eps, out);
  return (int)cudaGetLastError();
}

int qle_cuda_block_causal_conv(void* stream, long B, long T, long KS, long W, const float* conv, const float* src,
                               long lds, const float* conv_w, const float* conv_b, float* out, float* conv_out) {
  if (B * W == 0) return 0;
  causal_conv_kernel<<<qle_cuda_block_grid(B * W, kThreads), kThreads, 0, as_stream(stream)>>>(
      B, T, KS, W, conv, src, lds, conv_w, conv_b, out, conv_out);
  return (int)cudaGetLastError();
}

int qle_cuda_block_rms_norm(void* stream, long M, long E, const float* v, const float* w, const float* b, float eps,
                            float* out) {
  if (M == 0) return 0;
  rms_norm_kernel<<<qle_cuda_block_grid(M, 1), kThreads, 0, as_stream(stream)>>>(M, E, v, w, b, eps, out);
  return (int)cudaGetLastError();
}

int qle_cuda_block_soft_cap(void* stream, long n, float c, float* g) {
  if (n == 0 || c == 0.0f) return 0;
  soft_cap_kernel<<<qle_cuda_block_grid(n, kThreads), kThreads, 0, as_stream(stream)>>>(n, c, g);
  return (int)cudaGetLastError();
}

int qle_cuda_block_columns(void* stream, long M, const float* src, long lds, long c0, long n, float* dst) {
  if (M * n == 0) return 0;
  columns_kernel<<<qle_cuda_block_grid(M * n, kThreads), kThreads, 0, as_stream(stream)>>>(M, src, lds, c0, n,
                                                                                            dst);
  return (int)cudaGetLastError();
}

int qle_cuda_block_add(void* stream, long n, const float* a, float* out) {
  if (n == 0) return 0;
  add_kernel<<<qle_cuda_block_grid(n, kThreads), kThreads, 0, as_stream(stream)>>>(n, a, out);
  return (int)cudaGetLastError();
}

int qle_cuda_block_ffn_gate(void* stream, int act, long M, long U, const float* up, float* out) {
  if (M * U == 0) return 0;
  ffn_gate_kernel<<<qle_cuda_block_grid(M * U, kThreads), kThreads, 0, as_stream(stream)>>>(act, M, U, up, out);
  return (int)cudaGetLastError();
}
