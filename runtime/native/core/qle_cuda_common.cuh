// Device helpers shared by every family's CUDA kernels: reading a weight matrix as the ONNX node holds
// it (exporters/quantize.py), one output of a vector-matrix product with the mode's arithmetic (from 0, or
// onto an initial value in the CPU products' order), slices of stacked matrices and stream-ordered scratch
// memory.
// Internal linkage (anonymous namespace): each .cu file gets its own copy, as with a private one.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "qle_cuda_modes.h"

namespace {

// One matrix W [K, N] as the kernels read it: element (k, j) is element offset + k * N + j of the
// [..., K, N] matrices the raw tensor w holds (a slice of a stacked input starts at its offset, a
// multiple of N; an ONNX INT4 slice may start on a high nibble, a packed one starts at row
// offset / N). scale: the slice's own scales ([N], or [ceil(K / block), N] for int4).
struct Mat {
  int mode;
  long block;
  const void* w;
  const float* scale;
  long offset = 0;
};

__device__ inline float load_a(const float* a, long k) { return a[k]; }
__device__ inline float load_a(const __half* a, long k) { return __half2float(a[k]); }

__device__ inline float weight(const Mat& m, long k, long j, long N) {
  const long i = m.offset + k * N + j;
  switch (m.mode) {
    case QLE_CUDA_F16: return __half2float(static_cast<const __half*>(m.w)[i]);
    case QLE_CUDA_I8:
    case QLE_CUDA_I8_DYNAMIC: return (float)static_cast<const int8_t*>(m.w)[i];
    case QLE_CUDA_I4: {
      // ONNX INT4: element i is nibble i % 2 (low first) of byte i / 2, two's complement.
      const uint8_t b = static_cast<const uint8_t*>(m.w)[i >> 1];
      const int nib = (i & 1) ? (b >> 4) : (b & 0x0F);
      return (float)((nib ^ 8) - 8);
    }
    case QLE_CUDA_I4_PACKED: {
      // pack_int4: a row holds ceil(N / 2) bytes; column j is nibble j % 2 (low first) of byte
      // j / 2, stored as q + 8.
      const uint8_t b = static_cast<const uint8_t*>(m.w)[(m.offset / N + k) * (N / 2 + N % 2) + (j >> 1)];
      return (float)(((j & 1) ? (b >> 4) : (b & 0x0F)) - 8);
    }
    default: return static_cast<const float*>(m.w)[i];
  }
}

// int4 in either storage: block scales.
__host__ __device__ inline bool int4_mode(int mode) { return mode == QLE_CUDA_I4 || mode == QLE_CUDA_I4_PACKED; }

// sum_k a[k] * W[k, j] with the mode's arithmetic (exporters/quantize.py, function bodies):
//   fp32: float32; fp16: a rounded to float16, float32 sum, result rounded to float16;
//   int8: float32 sum times scale[j]; int4: per block, times scale[block, j];
//   int8-dynamic: a quantized with the row scale s, exact int32 sum, (acc * s) * scale[j].
template <typename TA>
__device__ float dot(const Mat& m, const TA* a, long K, long j, long N) {
  if (m.mode == QLE_CUDA_I8_DYNAMIC) {
    float amax = 0.0f;
    for (long k = 0; k < K; ++k) amax = fmaxf(amax, fabsf(load_a(a, k)));
    float s = __fdiv_rn(amax, 127.0f);
    s = s > 1e-30f ? s : 1e-30f;
    const int8_t* w = static_cast<const int8_t*>(m.w) + m.offset;
    int acc = 0;
    for (long k = 0; k < K; ++k) {
      const float q = fminf(fmaxf(rintf(__fdiv_rn(load_a(a, k), s)), -127.0f), 127.0f);
      acc += (int)q * (int)w[k * N + j];
    }
    return __fmul_rn(__fmul_rn((float)acc, s), m.scale[j]);
  }
  if (int4_mode(m.mode)) {
    float total = 0.0f;
    for (long k0 = 0, b = 0; k0 < K; k0 += m.block, ++b) {
      const long k1 = k0 + m.block < K ? k0 + m.block : K;
      float part = 0.0f;
      for (long k = k0; k < k1; ++k) part += load_a(a, k) * weight(m, k, j, N);
      total += m.scale[b * N + j] * part;
    }
    return total;
  }
  float s = 0.0f;
  for (long k = 0; k < K; ++k) {
    float ak = load_a(a, k);
    if (m.mode == QLE_CUDA_F16) ak = __half2float(__float2half_rn(ak));
    s += ak * weight(m, k, j, N);
  }
  if (m.mode == QLE_CUDA_F16) return __half2float(__float2half_rn(s));
  if (m.mode == QLE_CUDA_I8) return s * m.scale[j];
  return s;
}

// init + sum_k a[k] * W[k, j] in the order of the CPU's qle_qmatmul (scalar kernels): fp32 and int4 accumulate
// onto init (int4 block by block: init + s_0 part_0 + s_1 part_1 ...), the other modes add init to the finished
// dot above.
template <typename TA>
__device__ float dot_onto(const Mat& m, float init, const TA* a, long K, long j, long N) {
  if (m.mode == QLE_CUDA_F32) {
    float s = init;
    for (long k = 0; k < K; ++k) s += load_a(a, k) * weight(m, k, j, N);
    return s;
  }
  if (int4_mode(m.mode)) {
    float total = init;
    for (long k0 = 0, b = 0; k0 < K; k0 += m.block, ++b) {
      const long k1 = k0 + m.block < K ? k0 + m.block : K;
      float part = 0.0f;
      for (long k = k0; k < k1; ++k) part += load_a(a, k) * weight(m, k, j, N);
      total += m.scale[b * N + j] * part;
    }
    return total;
  }
  return init + dot(m, a, K, j, N);
}

constexpr int kThreads = 128;  // threads per block of every kernel

// Slice `index` [K, N] of a stacked matrix input [..., K, N] and of its scales (int8 [..., N], int4
// [..., ceil(K / block), N]; none in fp32 / fp16).
__host__ __device__ inline Mat slice(const Mat& stack, long index, long K, long N) {
  const long scale_len = int4_mode(stack.mode) ? (K / stack.block + (K % stack.block != 0)) * N : N;
  return Mat{stack.mode, stack.block, stack.w,
             stack.scale != nullptr ? stack.scale + index * scale_len : nullptr, index * K * N};
}

// out[o] = bias[o] + A @ W[:, o] for o < N, threads over o.
template <typename TA>
__device__ void project(const Mat& W, const TA* A, long K, const float* bias, float* out, long N) {
  for (long o = threadIdx.x; o < N; o += blockDim.x) out[o] = bias[o] + dot(W, A, K, o, N);
}

// Scratch device memory, ordered on the stream.
struct StreamBuffer {
  cudaStream_t stream;
  float* p = nullptr;
  cudaError_t alloc(size_t floats) {
    if (floats == 0) return cudaSuccess;
    return cudaMallocAsync(reinterpret_cast<void**>(&p), sizeof(float) * floats, stream);
  }
  // Frees after the work enqueued so far; returns `err`, or the free's error when err is success.
  cudaError_t release(cudaError_t err) {
    if (p == nullptr) return err;
    const cudaError_t f = cudaFreeAsync(p, stream);
    p = nullptr;
    return err != cudaSuccess ? err : f;
  }
};

}  // namespace
