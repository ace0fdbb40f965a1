// xLSTMLarge block CUDA kernel (qle_large_block_cuda.h): qle_large_block's steps in its order, each on the
// device: the block pieces (qle_block_cuda.h), the mLSTM recurrence (qle_cuda_mlstm, qle_xlstm_cuda.h) and the
// block's own element-wise kernels below (the formulas from qle_block_math.h, a head's norm statistics summed by
// one thread in index order). Every row of a chunk (B T of them) goes through each product at once; only the
// recurrence runs step by step. Scratch memory is allocated on the stream and freed after the block's kernels.
#include <cuda_runtime.h>

#include "qle_block_math.h"
#include "qle_block_scratch.h"
#include "qle_cuda_common.cuh"
#include "qle_large_block_cuda.h"
#include "qle_mlstm_args.h"
#include "qle_xlstm_cuda.h"

namespace {

// h [M, NH, DV] <- sigmoid(o) * (layer_norm(h per head) * w + b); o [M, V] at stride ldo. One thread block
// per (row, head): thread 0 takes the statistics, every thread its elements.
__global__ void __launch_bounds__(kThreads) gated_head_norm_kernel(long M, long NH, long DV, const float* w,
                                                                   const float* b, float eps, const float* o,
                                                                   long ldo, float* h) {
  __shared__ float mean, std;
  for (long s = blockIdx.x; s < M * NH; s += gridDim.x) {
    const long r = s / NH, hd = s % NH;
    float* x = h + s * DV;
    if (threadIdx.x == 0) qle_block_mean_std(DV, x, eps, &mean, &std);
    __syncthreads();
    for (long j = threadIdx.x; j < DV; j += blockDim.x) {
      const long c = hd * DV + j;
      x[j] = qle_block_gated_norm(o[r * ldo + c], x[j], mean, std, w[c], b[c]);
    }
    __syncthreads();  // mean and std are rewritten for the next head
  }
}

}  // namespace

int qle_cuda_large_block(void* stream, const QleCudaLargeBlock* p) {
  const QleCudaLargeBlock& a = *p;
  const long M = a.B * a.T, E = a.E, NH = a.NH, QK = NH * a.DK, V = NH * a.DV, U = a.U;
  const long P = 2 * QK + 2 * V;  // q, k, v, o
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  StreamBuffer scratch{s};
  QleLargeBlockScratch b;
  if (const cudaError_t e = scratch.alloc(qle_large_block_scratch(M, E, NH, QK, V, U, nullptr, &b))) return (int)e;
  qle_large_block_scratch(M, E, NH, QK, V, U, scratch.p, &b);
  const auto [xn, qkvo, gates, q, kk, v, ig, fg, h, x1, up, hf] = b;

  int e = qle_cuda_block_rms_norm(s, M, E, a.x, a.norm_mlstm_w, a.norm_mlstm_b, a.norm_eps, xn);
  if (!e) e = qle_cuda_block_product(s, a.W_qkvo, M, xn, E, a.b_qkvo, qkvo, P);
  if (!e) e = qle_cuda_block_product(s, a.W_if, M, xn, E, a.b_if, gates, 2 * NH);
  if (!e) e = qle_cuda_block_soft_cap(s, M * 2 * NH, a.gate_soft_cap, gates);
  if (!e) e = qle_cuda_block_columns(s, M, qkvo, P, 0, QK, q);
  if (!e) e = qle_cuda_block_columns(s, M, qkvo, P, QK, QK, kk);
  if (!e) e = qle_cuda_block_columns(s, M, qkvo, P, 2 * QK, V, v);
  if (!e) e = qle_cuda_block_columns(s, M, gates, 2 * NH, 0, NH, ig);
  if (!e) e = qle_cuda_block_columns(s, M, gates, 2 * NH, NH, NH, fg);
  if (!e) {
    const QleMlstmArgs c{a.B, a.T, NH, a.DK, a.DV, q, kk, v, ig, fg, a.C, a.n, a.m, a.q_scale, 1.0f, a.eps,
                         h, a.C_out, a.n_out, a.m_out};
    e = qle_cuda_mlstm(s, &c);
  }
  if (!e && M > 0) {
    gated_head_norm_kernel<<<qle_cuda_block_grid(M * NH, 1), kThreads, 0, s>>>(
        M, NH, a.DV, a.head_norm_w, a.head_norm_b, a.norm_eps, qkvo + 2 * QK + V, P, h);
    e = (int)cudaGetLastError();
  }
  if (!e) e = qle_cuda_block_product(s, a.W_out, M, h, V, a.b_out, x1, E);
  if (!e) e = qle_cuda_block_add(s, M * E, a.x, x1);
  if (!e) e = qle_cuda_block_rms_norm(s, M, E, x1, a.norm_ffn_w, a.norm_ffn_b, a.norm_eps, xn);
  if (!e) e = qle_cuda_block_product(s, a.W_up, M, xn, E, a.b_up, up, 2 * U);
  if (!e) e = qle_cuda_block_ffn_gate(s, QLE_FFN_SWISH, M, U, up, hf);  // silu(gate) z
  if (!e) e = qle_cuda_block_product(s, a.W_down, M, hf, U, a.b_down, a.Y, E);
  if (!e) e = qle_cuda_block_add(s, M * E, x1, a.Y);
  return (int)scratch.release((cudaError_t)e);
}
