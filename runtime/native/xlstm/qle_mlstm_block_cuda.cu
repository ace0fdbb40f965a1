// mLSTM block CUDA kernel (qle_mlstm_block_cuda.h): qle_mlstm_block's steps in its order, each on the device: the
// block pieces (qle_block_cuda.h: layer norms, products, the causal conv, the head-wise q/k/v product in
// qle_headwise_product's arithmetic), the mLSTM recurrence (qle_cuda_mlstm, qle_xlstm_cuda.h) and the block's
// output gate below (qle_block_math.h). Every row of a chunk (B T of them) goes through each product at once; only
// the conv window and the recurrence run step by step. Scratch memory is allocated on the stream and freed after
// the block's kernels.
#include <cuda_runtime.h>

#include "qle_block_math.h"
#include "qle_block_scratch.h"
#include "qle_cuda_common.cuh"
#include "qle_mlstm_args.h"
#include "qle_mlstm_block_cuda.h"
#include "qle_xlstm_cuda.h"

namespace {

// h [M, I] <- (h + skip x_c) silu(z), h head-normed; z is up's last I columns (row stride 2I).
__global__ void __launch_bounds__(kThreads)
    skip_gate_kernel(long M, long I, const float* skip, const float* x_c, const float* up, float* h) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < M * I; i += (long)gridDim.x * blockDim.x) {
    const long r = i / I, c = i % I;
    h[i] = qle_block_skip_gated(h[i], skip[c], x_c[i], up[r * 2 * I + I + c]);
  }
}

}  // namespace

int qle_cuda_mlstm_block(void* stream, const QleCudaMlstmBlock* p) {
  const QleCudaMlstmBlock& a = *p;
  const long M = a.B * a.T, E = a.E, NH = a.NH, I = NH * a.DH;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  StreamBuffer scratch{s};
  QleMlstmBlockScratch b;
  if (const cudaError_t e = scratch.alloc(qle_mlstm_block_scratch(M, E, NH, I, nullptr, &b))) return (int)e;
  qle_mlstm_block_scratch(M, E, NH, I, scratch.p, &b);
  const auto [xn, up, x_c, qkv, gates, q, kk, v, ig, fg, h] = b;

  int e = qle_cuda_block_layer_norm(s, M, 1, E, a.x, a.norm_w, a.norm_b, a.norm_eps, xn);
  if (!e) e = qle_cuda_block_product(s, a.W_up, M, xn, E, a.b_up, up, 2 * I);
  if (!e) e = qle_cuda_block_causal_conv(s, a.B, a.T, a.KS, I, a.conv, up, 2 * I, a.conv_w, a.conv_b, x_c, a.conv_out);
  if (!e) {
    const QleCudaBlockHeads heads{a.W_qkv, 3, I / a.BS, {x_c, x_c, up}, {I, I, 2 * I}};
    e = qle_cuda_block_headwise_product(s, heads, M, a.b_qkv, qkv, 3 * I);
  }
  if (!e) e = qle_cuda_block_product(s, a.W_if, M, qkv, 3 * I, a.b_if, gates, 2 * NH);
  if (!e) e = qle_cuda_block_columns(s, M, qkv, 3 * I, 0, I, q);
  if (!e) e = qle_cuda_block_columns(s, M, qkv, 3 * I, I, I, kk);
  if (!e) e = qle_cuda_block_columns(s, M, qkv, 3 * I, 2 * I, I, v);
  if (!e) e = qle_cuda_block_columns(s, M, gates, 2 * NH, 0, NH, ig);
  if (!e) e = qle_cuda_block_columns(s, M, gates, 2 * NH, NH, NH, fg);
  if (!e) {
    const QleMlstmArgs c{a.B, a.T, NH, a.DH, a.DH, q, kk, v, ig, fg, a.C, a.n, a.m, 1.0f, a.k_scale, a.eps,
                         h, a.C_out, a.n_out, a.m_out};
    e = qle_cuda_mlstm(s, &c);
  }
  if (!e) e = qle_cuda_block_layer_norm(s, M, NH, a.DH, h, a.head_norm_w, a.head_norm_b, a.norm_eps, h);
  if (!e && M > 0) {
    skip_gate_kernel<<<qle_cuda_block_grid(M * I, kThreads), kThreads, 0, s>>>(M, I, a.skip, x_c, up, h);
    e = (int)cudaGetLastError();
  }
  if (!e) e = qle_cuda_block_product(s, a.W_down, M, h, I, a.b_down, a.Y, E);
  if (!e) e = qle_cuda_block_add(s, M * E, a.x, a.Y);
  return (int)scratch.release((cudaError_t)e);
}
