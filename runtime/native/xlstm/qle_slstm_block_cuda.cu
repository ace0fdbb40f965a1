// sLSTM block CUDA kernel (qle_slstm_block_cuda.h): qle_slstm_block's steps in its order, each on the device: the
// block pieces (qle_block_cuda.h: layer norms, the causal conv, the gates' head-wise product in qle_qmatmul's
// arithmetic, the FFN products), the sLSTM recurrence (qle_cuda_slstm, qle_xlstm_cuda.h) and the FFN's gated
// activation (qle_cuda_block_ffn_gate). Every row of a chunk (B T of them) goes through each product
// but R's at once; only the conv window and the recurrence run step by step. Scratch memory is allocated on the
// stream and freed after the block's kernels.
#include <cuda_runtime.h>

#include "qle_block_scratch.h"
#include "qle_cuda_common.cuh"
#include "qle_slstm_block_cuda.h"
#include "qle_xlstm_cuda.h"

int qle_cuda_slstm_block(void* stream, const QleCudaSlstmBlock* p) {
  const QleCudaSlstmBlock& a = *p;
  const long M = a.B * a.T, E = a.E, NH = a.NH, DH = E / NH, U = a.U;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  StreamBuffer scratch{s};
  QleSlstmBlockScratch b;
  if (const cudaError_t e = scratch.alloc(qle_slstm_block_scratch(M, E, U, nullptr, &b))) return (int)e;
  qle_slstm_block_scratch(M, E, U, scratch.p, &b);
  const auto [xn, xc, wx, y, x1, up, hf] = b;

  int e = qle_cuda_block_layer_norm(s, M, 1, E, a.x, a.norm_w, a.norm_b, a.norm_eps, xn);
  if (!e) e = qle_cuda_block_causal_conv(s, a.B, a.T, a.KS, E, a.conv, xn, E, a.conv_w, a.conv_b, xc, a.conv_out);
  if (!e) {
    const QleCudaBlockHeads heads{a.W_gates, 4, NH, {xc, xc, xn, xn}, {E, E, E, E}};
    e = qle_cuda_block_heads_product(s, heads, M, a.b_gates, wx, 4 * E);
  }
  if (!e) {
    const QleCudaSlstm c{a.R.mode, a.R.block, a.B, a.T, NH, DH, wx, a.y, a.c, a.n, a.m, a.R.w, a.R.scale, a.b,
                         y, a.y_out, a.c_out, a.n_out, a.m_out};
    e = qle_cuda_slstm(s, &c);
  }
  if (!e) e = qle_cuda_block_layer_norm(s, M, NH, DH, y, a.group_norm_w, a.group_norm_b, a.norm_eps, x1);
  if (!e) e = qle_cuda_block_add(s, M * E, a.x, x1);
  if (!e) e = qle_cuda_block_layer_norm(s, M, 1, E, x1, a.ffn_norm_w, a.ffn_norm_b, a.norm_eps, xn);
  if (!e) e = qle_cuda_block_product(s, a.W_up, M, xn, E, a.b_up, up, 2 * U);
  if (!e) e = qle_cuda_block_ffn_gate(s, a.ffn_act, M, U, up, hf);
  if (!e) e = qle_cuda_block_product(s, a.W_down, M, hf, U, a.b_down, a.H, E);
  if (!e) e = qle_cuda_block_add(s, M * E, x1, a.H);
  return (int)scratch.release((cudaError_t)e);
}
