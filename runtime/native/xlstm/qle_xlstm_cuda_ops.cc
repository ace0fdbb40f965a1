// sLSTMCell, sLSTMSequence, mLSTMCell and mLSTMSequence for CUDAExecutionProvider, with the signatures,
// quantized modes and error messages of the CPU ops (qle_xlstm_ops.h). Built only with QLE_WITH_CUDA
// (runtime/libqlstm_edge_ops_cuda.so); the kernels are in qle_xlstm_cuda.cu.
//
// Inputs live on the device except the mLSTM's q_scale, k_scale and eps, which the host reads and
// passes by value (declared OrtMemTypeCPUInput, so onnxruntime hands them over in host memory). The
// CPU kernel's one extra check, int8-dynamic weights in [-127, 127], needs the weights on the host and
// is not made here (the CUDA product is exact for -128 too).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <stdint.h>

#include <vector>

#include "qle_cuda_ops.h"
#include "qle_registry.h"
#include "qle_xlstm_cuda.h"
#include "qle_xlstm_ops.h"

namespace {

using Inputs = QleOpInputs;

int launch_slstm(Ort::KernelContext& ctx, const Inputs& in, const QleCudaNode& node, void* stream,
                 OrtStatusPtr* st) {
  QleSlstmDims d;
  if ((*st = qle_check_slstm(in, node.block, in.op.sequence, &d))) return 0;
  const QleSlstmOutputs o = qle_slstm_outputs(ctx, d, in.op.sequence);
  QleCudaSlstm a{};
  a.mode = qle_cuda_matrix_mode(in, 5), a.block = node.block;
  a.B = d.B, a.T = d.T, a.NH = d.NH, a.DH = d.DH;
  a.x = in.f(0), a.y = in.f(1), a.c = in.f(2), a.n = in.f(3), a.m = in.f(4);
  a.R = in.data[5], a.R_scale = in.scale(7), a.b = in.f(6);
  a.Y = o.Y, a.y_out = o.y, a.c_out = o.c, a.n_out = o.n, a.m_out = o.m;
  return qle_cuda_slstm(stream, &a);
}

int launch_mlstm(Ort::KernelContext& ctx, const Inputs& in, const QleCudaNode&, void* stream, OrtStatusPtr* st) {
  QleMlstmDims d;
  if ((*st = qle_check_mlstm(in, in.op.sequence, &d))) return 0;
  QleMlstmArgs a{};
  qle_mlstm_args(in, d, qle_mlstm_outputs(ctx, d, in.op.sequence), &a);
  return qle_cuda_mlstm(stream, &a);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  qle_append_ops<QleCudaOp<launch_slstm>>({&qle_slstm_spec(false), &qle_slstm_spec(true)}, out);
  qle_append_ops<QleCudaOp<launch_mlstm>>({&qle_mlstm_spec(false), &qle_mlstm_spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace
