// What the CUDA op registrations of every family share: the launchers' weight modes of a node and the
// op and kernel around a launcher.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "qle_contract.h"
#include "qle_cpu_ops.h"
#include "qle_cuda_modes.h"

// The launchers' mode of a node of mode m.
inline int qle_cuda_mode(QleQMode m) {
  switch (m) {
    case QleQMode::F32: return QLE_CUDA_F32;
    case QleQMode::F16: return QLE_CUDA_F16;
    case QleQMode::I8: return QLE_CUDA_I8;
    case QleQMode::I8Dyn: return QLE_CUDA_I8_DYNAMIC;
    case QleQMode::I4: return QLE_CUDA_I4;
  }
  return QLE_CUDA_F32;
}

// How matrix input i of a node is stored: the node's mode, or QLE_CUDA_I4_PACKED.
inline int qle_cuda_matrix_mode(const QleOpInputs& in, size_t i) {
  return qle_qmatrix_packed(in.mode, in.type[i]) ? QLE_CUDA_I4_PACKED : qle_cuda_mode(in.mode);
}

// What a node's kernel reads when it is made: the int4 block size (0 in the other modes) and the node's
// values of the spec's float attributes and string attributes (indices into their values), in order.
struct QleCudaNode {
  long block = 0;
  std::vector<float> attributes;
  std::vector<int> choices;
};

// A family's launcher of a checked-then-launched node: checks `in` (a failure in *st, 0 returned),
// allocates the outputs, then enqueues the kernels on `stream`: 0 or a CUDA error.
typedef int (*QleCudaLaunch)(Ort::KernelContext& ctx, const QleOpInputs& in, const QleCudaNode& node, void* stream,
                             OrtStatusPtr* st);

struct QleCudaKernel {
  const QleOpSpec& op;
  QleCudaLaunch launch;
  QleQMode mode;
  QleCudaNode node;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return qle_op_compute(context, op, mode, [&](Ort::KernelContext& ctx, const QleOpInputs& in) -> OrtStatusPtr {
      OrtStatusPtr st = nullptr;
      const int err = launch(ctx, in, node, ctx.GetGPUComputeStream(), &st);
      if (st != nullptr || err == 0) return st;
      return qle_op_status(ORT_EP_FAIL, in.op, "CUDA error " + std::to_string(err) + ": " + qle_cuda_error_string(err));
    });
  }
};

// An op for CUDAExecutionProvider running Launch: the inputs the checks read (the spec's `host`) in
// host memory, the others on the device. Weights are read in their ONNX layout on every call (no
// packing).
template <QleCudaLaunch Launch>
struct QleCudaOp : QleOpSchema<QleCudaOp<Launch>, QleCudaKernel> {
  explicit QleCudaOp(const QleOpSpec& s) : QleOpSchema<QleCudaOp<Launch>, QleCudaKernel>(s) {}
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  OrtMemType GetInputMemoryType(size_t i) const {
    return this->spec().on_host(i) ? OrtMemTypeCPUInput : OrtMemTypeDefault;
  }
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    QleQMode mode = QleQMode::F32;
    QleCudaNode node;
    if (!this->spec().matrices.empty())
      if (OrtStatusPtr st = qle_read_qmode(api, info, this->GetName(), &mode, &node.block)) return st;
    if (OrtStatusPtr st = qle_read_attributes(api, info, this->spec(), &node.attributes, &node.choices)) return st;
    *kernel = new QleCudaKernel{this->spec(), Launch, mode, std::move(node)};
    return nullptr;
  }
};
