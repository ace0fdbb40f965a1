// QLLSTMCell / QLLSTMSequence for CUDAExecutionProvider, with the signatures, quantized modes and error
// messages of the CPU ops (qle_qllstm_ops.h). Built only with QLE_WITH_CUDA
// (runtime/libqlstm_edge_ops_cuda.so); the kernels are in qle_qllstm_cuda.cu. Every input lives on
// the device.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <vector>

#include "qle_cuda_ops.h"
#include "qle_qllstm_cuda.h"
#include "qle_qllstm_ops.h"
#include "qle_registry.h"

namespace {

using Inputs = QleOpInputs;

int launch_qllstm(Ort::KernelContext& ctx, const Inputs& in, const QleCudaNode& node, void* stream,
                  OrtStatusPtr* st) {
  const bool seq = in.op.sequence;
  QleQllstmDims d;
  if ((*st = qle_check_qllstm(in, node.block, seq, &d))) return 0;
  const QleQllstmOutputs o = qle_qllstm_outputs(ctx, d, seq);
  const QleCudaWeights w{qle_cuda_mode(in.mode), node.block, in.data[3], in.data[4], in.scale(9), in.scale(10),
                         qle_cuda_matrix_mode(in, 3), qle_cuda_matrix_mode(in, 4)};
  if (seq)
    return qle_cuda_sequence(stream, &w, d.B, d.T, d.D, d.H, in.data[0], in.f(1), in.f(2), in.f(5), in.f(6),
                             in.f(7), in.f(8), o.Y, o.h, o.c);
  return qle_cuda_cell(stream, &w, d.B, d.D, d.H, in.data[0], in.f(1), in.f(2), in.f(5), in.f(6), in.f(7),
                       in.f(8), o.h, o.c);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  qle_append_ops<QleCudaOp<launch_qllstm>>({&qle_qllstm_spec(false), &qle_qllstm_spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace
