// CUDA kernels of the PR-LSTM custom ops (launcher in qle_prlstm_cuda.h), every mode their nodes can
// have. The maths is the CPU kernel's (qle_prlstm.h): per-unit gate maths from the same source
// (qle_prlstm_math.h, float instantiation), matrix products through dot() (qle_cuda_common.cuh: ONNX
// weight layouts read in place, int4 nibbles and float16 halves included, the fp16 / int8-dynamic
// arithmetic of the function bodies). Build with --fmad=false: the shared gate maths must not be
// contracted into fused multiply-adds (the CPU build has -ffp-contract=off), or results drift from the
// CPU kernel's.
//
// The recurrence is sequential per stream, so one thread block runs one batch row from the first
// token to the last. Threads split the units (outputs of a product, hidden units), and
// __syncthreads() separates every step whose inputs another thread wrote. Correctness and clarity
// first: each thread does its dot products on its own (no tiling, no tensor cores).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "qle_cuda_common.cuh"
#include "qle_prlstm_cuda.h"
#include "qle_prlstm_math.h"

namespace {

// ---------------------------------------------------------------------------------------------
// PR-LSTM (qle_prlstm.h): one block per batch row.

constexpr long kPrScratch = 11;  // floats per unit and row: z [5H], hh [2H], two (h, c) pairs [4H]

struct PrDev {
  long T, D, H, K, R;
  const void* x;
  const float *block_h, *block_c, *prefix_h, *prefix_c;
  Mat leaf, merge, unary;  // unary: the whole stack [R, H, 4H]
  const float *b_leaf, *b_merge, *b_unary;
  float* Y;
  float *bh, *bc, *ph, *pc;  // the state outputs
  int64_t* count;            // holds the input counts (copied in), overwritten with the new ones
  float* scratch;            // [B, kPrScratch * H]
};

// (h, c) = combine((h_l, c_l), (h_r, c_r)): the merge, then the R unary refinements. z [5H] and
// hh [2H] are the row's scratch; h, c must not alias the inputs. Ends synchronised.
__device__ void pr_combine(const PrDev& a, float* z, float* hh, const float* h_l, const float* c_l,
                           const float* h_r, const float* c_r, float* h, float* c) {
  const long H = a.H;
  for (long j = threadIdx.x; j < H; j += blockDim.x) {
    hh[j] = h_l[j];
    hh[H + j] = h_r[j];
  }
  __syncthreads();
  project(a.merge, hh, 2 * H, a.b_merge, z, 5 * H);
  __syncthreads();
  for (long j = threadIdx.x; j < H; j += blockDim.x)
    qle_fm_pr_merge(z[j], z[H + j], z[2 * H + j], z[3 * H + j], z[4 * H + j], c_l[j], c_r[j], &h[j],
                    &c[j]);
  __syncthreads();
  for (long r = 0; r < a.R; ++r) {
    project(slice(a.unary, r, H, 4 * H), h, H, a.b_unary + r * 4 * H, z, 4 * H);
    __syncthreads();
    for (long j = threadIdx.x; j < H; j += blockDim.x)
      qle_fm_pr_unary(z[j], z[H + j], z[2 * H + j], z[3 * H + j], c[j], &h[j], &c[j]);
    __syncthreads();
  }
}

// TX: x's element type (float, or __half in fp16 nodes).
template <typename TX>
__global__ void __launch_bounds__(kThreads) prlstm_kernel(PrDev a) {
  const long r = blockIdx.x, H = a.H, KH = a.K * H;
  float* z = a.scratch + r * kPrScratch * H;
  float* hh = z + 5 * H;
  float *cur_h = hh + 2 * H, *cur_c = cur_h + H, *p_h = cur_c + H, *p_c = p_h + H;
  float *bh = a.bh + r * KH, *bc = a.bc + r * KH, *ph = a.ph + r * KH, *pc = a.pc + r * KH;
  for (long i = threadIdx.x; i < KH; i += blockDim.x) {
    bh[i] = a.block_h[r * KH + i];
    bc[i] = a.block_c[r * KH + i];
    ph[i] = a.prefix_h[r * KH + i];
    pc[i] = a.prefix_c[r * KH + i];
  }
  int64_t n = a.count[r];
  __syncthreads();
  const uint64_t low_mask = (1ull << a.K) - 1;  // K <= 62
  const int64_t limit = (int64_t)1 << a.K;       // positions >= 2^K are past the stream limit
  const float nan = __int_as_float(0x7fc00000);
  const TX* x = static_cast<const TX*>(a.x) + r * a.T * a.D;
  for (long t = 0; t < a.T; ++t, ++n) {
    // carries: index of the lowest zero bit of L (0 when all K bits are set), at most K - 1
    const uint64_t L = (uint64_t)n & low_mask;
    const long carries = L == low_mask ? 0 : __ffsll((long long)~L) - 1;
    project(a.leaf, x + t * a.D, a.D, a.b_leaf, z, 3 * H);
    __syncthreads();
    for (long j = threadIdx.x; j < H; j += blockDim.x)
      qle_fm_pr_leaf(z[j], z[H + j], z[2 * H + j], &cur_h[j], &cur_c[j]);
    __syncthreads();
    for (long b = 0; b < carries; ++b) {  // cur = combine(block[b], cur)
      pr_combine(a, z, hh, bh + b * H, bc + b * H, cur_h, cur_c, p_h, p_c);
      float* swap = cur_h;
      cur_h = p_h, p_h = swap;
      swap = cur_c;
      cur_c = p_c, p_c = swap;
    }
    const uint64_t above = L >> (carries + 1);
    const float *P_h = cur_h, *P_c = cur_c;
    if (above != 0) {  // P = combine(prefix[l], cur), l the lowest set bit of L above `carries`
      const long base = carries + __ffsll((long long)above);
      pr_combine(a, z, hh, ph + base * H, pc + base * H, cur_h, cur_c, p_h, p_c);
      P_h = p_h, P_c = p_c;
    }
    float* y = a.Y + (r * a.T + t) * H;
    const bool past = n + 1 >= limit;
    for (long j = threadIdx.x; j < H; j += blockDim.x) y[j] = past ? nan : P_h[j];
    for (long i = threadIdx.x; i < carries * H; i += blockDim.x) bh[i] = bc[i] = ph[i] = pc[i] = 0.0f;
    for (long j = threadIdx.x; j < H; j += blockDim.x) {
      bh[carries * H + j] = cur_h[j];
      bc[carries * H + j] = cur_c[j];
      ph[carries * H + j] = P_h[j];
      pc[carries * H + j] = P_c[j];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) a.count[r] = n;
}
}  // namespace

int qle_cuda_prlstm(void* stream, const QleCudaPrlstm* p) {
  if (p->B == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  // The kernel updates the counts in place: count_host is pageable, so the copy has read it when
  // cudaMemcpyAsync returns.
  cudaError_t e = cudaMemcpyAsync(p->count_out, p->count_host, sizeof(int64_t) * p->B,
                                  cudaMemcpyHostToDevice, s);
  if (e != cudaSuccess) return (int)e;
  StreamBuffer scratch{s};
  if ((e = scratch.alloc((size_t)(p->B * kPrScratch * p->H))) != cudaSuccess) return (int)e;
  const PrDev a{p->T,
                p->D,
                p->H,
                p->K,
                p->R,
                p->x,
                p->block_h,
                p->block_c,
                p->prefix_h,
                p->prefix_c,
                Mat{p->leaf_mode, p->block, p->W_leaf, p->s_leaf},
                Mat{p->merge_mode, p->block, p->W_merge, p->s_merge},
                Mat{p->unary_mode, p->block, p->W_unary, p->s_unary},
                p->b_leaf,
                p->b_merge,
                p->b_unary,
                p->Y,
                p->block_h_out,
                p->block_c_out,
                p->prefix_h_out,
                p->prefix_c_out,
                p->count_out,
                scratch.p};
  if (p->mode == QLE_CUDA_F16)
    prlstm_kernel<__half><<<(unsigned)p->B, kThreads, 0, s>>>(a);
  else
    prlstm_kernel<float><<<(unsigned)p->B, kThreads, 0, s>>>(a);
  return (int)scratch.release(cudaGetLastError());
}
