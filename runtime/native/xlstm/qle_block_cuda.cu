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
