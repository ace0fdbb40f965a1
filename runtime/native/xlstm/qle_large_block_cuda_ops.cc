// xLSTMLargeBlock and xLSTMLargeBlockSequence for CUDAExecutionProvider, with the specs, shape checks, quantized
// modes and error messages of the CPU ops (qle_large_block_ops.h). Built only with QLE_WITH_CUDA
// (runtime/libqlstm_edge_ops_cuda.so); the kernels are in qle_large_block_cuda.cu.
//
// Inputs live on the device except gate_soft_cap, q_scale and eps, which the host reads and passes by value
// (declared OrtMemTypeCPUInput); norm_eps is the node's attribute. The weights are read in their ONNX layout on
// every call (no packing). The CPU kernel's one extra check, int8-dynamic weights in [-127, 127], needs the
// weights on the host and is not made here (the CUDA product is exact for -128 too).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <vector>

#include "qle_cuda_ops.h"
#include "qle_large_block_cuda.h"
#include "qle_large_block_ops.h"
#include "qle_registry.h"

namespace {

constexpr size_t kScales = 23;  // the integer modes' first scale input (W_qkvo's)

// Matrix input i, the j-th of the five ([K, N]).
QleCudaBlockMatrix matrix(const QleOpInputs& in, long block, size_t i, size_t j, long K, long N) {
  return QleCudaBlockMatrix{qle_cuda_matrix_mode(in, i), block, in.data[i], in.scale(kScales + j), K, N};
}

int launch(Ort::KernelContext& ctx, const QleOpInputs& in, const QleCudaNode& node, void* stream,
           OrtStatusPtr* st) {
  const bool seq = in.op.sequence;
  QleLargeBlockDims d;
  if ((*st = qle_check_large_block(in, node.block, seq, &d))) return 0;
  QleCudaLargeBlock a{};
  if ((*st = in.scalar(20, &a.gate_soft_cap)) || (*st = in.scalar(21, &a.q_scale)) || (*st = in.scalar(22, &a.eps)))
    return 0;
  const long E = d.E, QK = d.NH * d.DK, V = d.NH * d.DV, U = d.U;
  a.B = d.B, a.T = d.T, a.E = E, a.NH = d.NH, a.DK = d.DK, a.DV = d.DV, a.U = U;
  a.norm_eps = node.attributes[0];
  a.x = in.f(0), a.C = in.f(1), a.n = in.f(2), a.m = in.f(3);
  a.norm_mlstm_w = in.f(4), a.norm_mlstm_b = in.f(5), a.b_qkvo = in.f(7), a.b_if = in.f(9);
  a.head_norm_w = in.f(10), a.head_norm_b = in.f(11), a.b_out = in.f(13), a.norm_ffn_w = in.f(14);
  a.norm_ffn_b = in.f(15), a.b_up = in.f(17), a.b_down = in.f(19);
  a.W_qkvo = matrix(in, node.block, 6, 0, E, 2 * QK + 2 * V);
  a.W_if = matrix(in, node.block, 8, 1, E, 2 * d.NH);
  a.W_out = matrix(in, node.block, 12, 2, V, E);
  a.W_up = matrix(in, node.block, 16, 3, E, 2 * U);
  a.W_down = matrix(in, node.block, 18, 4, U, E);
  a.Y = qle_output(ctx, 0, seq ? std::vector<int64_t>{d.B, d.T, E} : std::vector<int64_t>{d.B, E});
  a.C_out = qle_output(ctx, 1, {d.B, d.NH, d.DK, d.DV});
  a.n_out = qle_output(ctx, 2, {d.B, d.NH, d.DK});
  a.m_out = qle_output(ctx, 3, {d.B, d.NH, 1});
  return qle_cuda_large_block(stream, &a);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  qle_append_ops<QleCudaOp<launch>>({&qle_large_block_spec(false), &qle_large_block_spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace
