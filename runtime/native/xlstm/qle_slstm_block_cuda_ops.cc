// sLSTMBlock and sLSTMBlockSequence for CUDAExecutionProvider, with the specs, shape checks, quantized modes and
// error messages of the CPU ops (qle_slstm_block_ops.h). Built only with QLE_WITH_CUDA
// (runtime/libqlstm_edge_ops_cuda.so); the kernels are in qle_slstm_block_cuda.cu.
//
// Every input lives on the device; norm_eps and ffn_act are the node's attributes. The weights are read in
// their ONNX layout on every call (no packing).

#include <vector>

#include "qle_cuda_ops.h"
#include "qle_registry.h"
#include "qle_slstm_block_cuda.h"
#include "qle_slstm_block_ops.h"

namespace {

constexpr size_t kScales = 22;  // the integer modes' first scale input (W_gates'; then R's, W_up's, W_down's)

// Matrix input i [K, N] (W_gates, R: one head slice), its scale input kScales + j.
QleCudaBlockMatrix matrix(const QleOpInputs& in, long block, size_t i, size_t j, long K, long N) {
  return QleCudaBlockMatrix{qle_cuda_matrix_mode(in, i), block, in.data[i], in.scale(kScales + j), K, N};
}

int launch(Ort::KernelContext& ctx, const QleOpInputs& in, const QleCudaNode& node, void* stream,
           OrtStatusPtr* st) {
  const bool seq = in.op.sequence;
  QleSlstmBlockDims d;
  if ((*st = qle_check_slstm_block(in, node.block, seq, &d))) return 0;
  QleCudaSlstmBlock a{};
  const long E = d.E, U = d.U;
  a.B = d.B, a.T = d.T, a.E = E, a.NH = d.NH, a.KS = d.KS, a.U = U;
  a.norm_eps = node.attributes[0], a.ffn_act = node.choices[0];
  a.x = in.f(0), a.conv = in.f(1), a.y = in.f(2), a.c = in.f(3), a.n = in.f(4), a.m = in.f(5);
  a.norm_w = in.f(6), a.norm_b = in.f(7), a.conv_w = in.f(8), a.conv_b = in.f(9), a.b_gates = in.f(11);
  a.b = in.f(13), a.group_norm_w = in.f(14), a.group_norm_b = in.f(15), a.ffn_norm_w = in.f(16);
  a.ffn_norm_b = in.f(17), a.b_up = in.f(19), a.b_down = in.f(21);
  a.W_gates = matrix(in, node.block, 10, 0, d.DH, d.DH);
  a.R = matrix(in, node.block, 12, 1, d.DH, d.DH);
  a.W_up = matrix(in, node.block, 18, 2, E, 2 * U);
  a.W_down = matrix(in, node.block, 20, 3, U, E);
  a.H = qle_output(ctx, 0, seq ? std::vector<int64_t>{d.B, d.T, E} : std::vector<int64_t>{d.B, E});
  a.conv_out = qle_output(ctx, 1, {d.B, d.KS, E});
  a.y_out = qle_output(ctx, 2, {d.B, E});
  a.c_out = qle_output(ctx, 3, {d.B, E});
  a.n_out = qle_output(ctx, 4, {d.B, E});
  a.m_out = qle_output(ctx, 5, {d.B, E});
  return qle_cuda_slstm_block(stream, &a);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  qle_append_ops<QleCudaOp<launch>>({&qle_slstm_block_spec(false), &qle_slstm_block_spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace
