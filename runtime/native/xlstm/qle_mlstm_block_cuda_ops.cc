// mLSTMBlock and mLSTMBlockSequence for CUDAExecutionProvider, with the specs, shape checks, quantized modes and
// error messages of the CPU ops (qle_mlstm_block_ops.h). Built only with QLE_WITH_CUDA
// (runtime/libqlstm_edge_ops_cuda.so); the kernels are in qle_mlstm_block_cuda.cu.
//
// Inputs live on the device except k_scale and eps, which the host reads and passes by value (declared
// OrtMemTypeCPUInput); norm_eps is the node's attribute. The weights are read in their ONNX layout on every call
// (no packing). The CPU kernel's one extra check, int8-dynamic weights in [-127, 127], needs the weights on the
// host and is not made here (the CUDA product is exact for -128 too).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <vector>

#include "qle_cuda_ops.h"
#include "qle_mlstm_block_cuda.h"
#include "qle_mlstm_block_ops.h"
#include "qle_registry.h"

namespace {

constexpr size_t kScales = 22;  // the integer modes' first scale input (W_up's; then W_qkv's, W_if's, W_down's)

// Matrix input i [K, N] (W_qkv: one head's), its scale input kScales + j.
QleCudaBlockMatrix matrix(const QleOpInputs& in, long block, size_t i, size_t j, long K, long N) {
  return QleCudaBlockMatrix{qle_cuda_matrix_mode(in, i), block, in.data[i], in.scale(kScales + j), K, N};
}

int launch(Ort::KernelContext& ctx, const QleOpInputs& in, const QleCudaNode& node, void* stream,
           OrtStatusPtr* st) {
  const bool seq = in.op.sequence;
  QleMlstmBlockDims d;
  if ((*st = qle_check_mlstm_block(in, node.block, seq, &d))) return 0;
  QleCudaMlstmBlock a{};
  if ((*st = in.scalar(20, &a.k_scale)) || (*st = in.scalar(21, &a.eps))) return 0;
  const long E = d.E, NH = d.NH, I = d.NH * d.DH;
  a.B = d.B, a.T = d.T, a.E = E, a.NH = NH, a.DH = d.DH, a.KS = d.KS, a.BS = d.BS;
  a.norm_eps = node.attributes[0];
  a.x = in.f(0), a.conv = in.f(1), a.C = in.f(2), a.n = in.f(3), a.m = in.f(4);
  a.norm_w = in.f(5), a.norm_b = in.f(6), a.b_up = in.f(8), a.conv_w = in.f(9), a.conv_b = in.f(10);
  a.b_qkv = in.f(12), a.b_if = in.f(14), a.head_norm_w = in.f(15), a.head_norm_b = in.f(16), a.skip = in.f(17);
  a.b_down = in.f(19);
  a.W_up = matrix(in, node.block, 7, 0, E, 2 * I);
  a.W_qkv = matrix(in, node.block, 11, 1, d.BS, d.BS);
  a.W_if = matrix(in, node.block, 13, 2, 3 * I, 2 * NH);
  a.W_down = matrix(in, node.block, 18, 3, I, E);
  a.Y = qle_output(ctx, 0, seq ? std::vector<int64_t>{d.B, d.T, E} : std::vector<int64_t>{d.B, E});
  a.conv_out = qle_output(ctx, 1, {d.B, d.KS, I});
  a.C_out = qle_output(ctx, 2, {d.B, NH, d.DH, d.DH});
  a.n_out = qle_output(ctx, 3, {d.B, NH, d.DH, 1});
  a.m_out = qle_output(ctx, 4, {d.B, NH, 1, 1});
  return qle_cuda_mlstm_block(stream, &a);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  qle_append_ops<QleCudaOp<launch>>({&qle_mlstm_block_spec(false), &qle_mlstm_block_spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace
