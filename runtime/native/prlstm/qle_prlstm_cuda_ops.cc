// PRLSTMStep / PRLSTMSequence for CUDAExecutionProvider, with the signatures, quantized modes and error
// messages of the CPU ops (qle_prlstm_ops.h). Built only with QLE_WITH_CUDA
// (runtime/libqlstm_edge_ops_cuda.so); the kernel is in qle_prlstm_cuda.cu.
//
// Inputs live on the device except count, which the host must read: range-checked by the contract,
// then copied to count' which the kernel updates in place (declared OrtMemTypeCPUInput, so onnxruntime
// hands it over in host memory). The CPU kernel's one extra check, int8-dynamic weights in
// [-127, 127], needs the weights on the host and is not made here (the CUDA product is exact for -128
// too).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <stdint.h>

#include <vector>

#include "qle_cuda_ops.h"
#include "qle_registry.h"
#include "qle_prlstm_cuda.h"
#include "qle_prlstm_ops.h"

namespace {

using Inputs = QleOpInputs;

int launch_prlstm(Ort::KernelContext& ctx, const Inputs& in, const QleCudaNode& node, void* stream,
                  OrtStatusPtr* st) {
  QlePrDims d;
  if ((*st = qle_check_prlstm(in, node.block, in.op.sequence, &d))) return 0;
  const QlePrOutputs o = qle_prlstm_outputs(ctx, d, in.op.sequence);
  QleCudaPrlstm a{};
  a.mode = qle_cuda_mode(in.mode), a.block = node.block;
  a.B = d.B, a.T = d.T, a.D = d.D, a.H = d.H, a.K = d.K, a.R = d.R;
  a.x = in.data[0];
  a.block_h = in.f(1), a.block_c = in.f(2), a.prefix_h = in.f(3), a.prefix_c = in.f(4);
  a.count_host = static_cast<const int64_t*>(in.data[5]);
  a.W_leaf = in.data[6], a.W_merge = in.data[8], a.W_unary = in.data[10];
  a.leaf_mode = qle_cuda_matrix_mode(in, 6), a.merge_mode = qle_cuda_matrix_mode(in, 8);
  a.unary_mode = qle_cuda_matrix_mode(in, 10);
  a.s_leaf = in.scale(12), a.s_merge = in.scale(13), a.s_unary = in.scale(14);
  a.b_leaf = in.f(7), a.b_merge = in.f(9), a.b_unary = in.f(11);
  a.Y = o.Y, a.block_h_out = o.block_h, a.block_c_out = o.block_c;
  a.prefix_h_out = o.prefix_h, a.prefix_c_out = o.prefix_c, a.count_out = o.count;
  return qle_cuda_prlstm(stream, &a);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  qle_append_ops<QleCudaOp<launch_prlstm>>({&qle_prlstm_spec(false), &qle_prlstm_spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace
