// onnxruntime custom ops of the PR-LSTM and xLSTM families for CUDAExecutionProvider, domain
// qlstm_edge, op-set 1: PRLSTMStep, PRLSTMSequence, sLSTMCell, sLSTMSequence, mLSTMCell,
// mLSTMSequence, with the signatures, quantized modes and error messages of the CPU ops
// (qle_family_ops.h has the signatures, qle_family_contract.h the checks and messages both share,
// exporters/quantize.py the quantized contract). Built only with QLE_WITH_CUDA
// (runtime/libqlstm_edge_ops_cuda.so); the kernels are in qle_family_cuda.cu.
//
// Inputs live on the device except those the host must read: the PR-LSTM's count (range-checked
// by the contract, then copied to count' which the kernel updates in place) and the mLSTM's
// q_scale, k_scale and eps (passed by value). They are declared OrtMemTypeCPUInput, so onnxruntime hands them over
// in host memory. Weights are read in their ONNX layout on every call (no packing); the CPU
// kernels' one extra check, int8-dynamic weights in [-127, 127], needs the weights on the host and
// is not made here (the CUDA product is exact for -128 too).
//
// Compile-checked only: no GPU was available where this was written, so it has not run.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <atomic>
#include <stdint.h>
#include <string>
#include <vector>

#include "qle_contract.h"
#include "qle_prlstm_cuda.h"
#include "qle_prlstm_ops.h"
#include "qle_qmatrix.h"

namespace {

std::atomic<unsigned long long> g_calls{0};

using Kind = QleFamilyKind;
using Inputs = QleFamilyInputs;

int cuda_mode(QleQMode m) {
  switch (m) {
    case QleQMode::F32: return QLE_CUDA_F32;
    case QleQMode::F16: return QLE_CUDA_F16;
    case QleQMode::I8: return QLE_CUDA_I8;
    case QleQMode::I8Dyn: return QLE_CUDA_I8_DYNAMIC;
    case QleQMode::I4: return QLE_CUDA_I4;
  }
  return QLE_CUDA_F32;
}

// How matrix input i of a node is stored.
int cuda_matrix_mode(const Inputs& in, size_t i) {
  return qle_qmatrix_packed(in.mode, in.type[i]) ? QLE_CUDA_I4_PACKED : cuda_mode(in.mode);
}

// Each run_* checks the node (a failure in *st, 0 returned), then launches: 0 or a CUDA error.
// -- PR-LSTM -----------------------------------------------------------------------------------
int run_prlstm(Ort::KernelContext& ctx, const Inputs& in, long block, bool seq, void* stream,
               OrtStatusPtr* st) {
  QlePrDims d;
  if ((*st = qle_check_prlstm(in, block, seq, &d))) return 0;
  const QlePrOutputs o = qle_prlstm_outputs(ctx, d, seq);
  QleCudaPrlstm a{};
  a.mode = cuda_mode(in.mode), a.block = block;
  a.B = d.B, a.T = d.T, a.D = d.D, a.H = d.H, a.K = d.K, a.R = d.R;
  a.x = in.data[0];
  a.block_h = in.f(1), a.block_c = in.f(2), a.prefix_h = in.f(3), a.prefix_c = in.f(4);
  a.count_host = static_cast<const int64_t*>(in.data[5]);
  a.W_leaf = in.data[6], a.W_merge = in.data[8], a.W_unary = in.data[10];
  a.leaf_mode = cuda_matrix_mode(in, 6), a.merge_mode = cuda_matrix_mode(in, 8);
  a.unary_mode = cuda_matrix_mode(in, 10);
  a.s_leaf = in.scale(12), a.s_merge = in.scale(13), a.s_unary = in.scale(14);
  a.b_leaf = in.f(7), a.b_merge = in.f(9), a.b_unary = in.f(11);
  a.Y = o.Y, a.block_h_out = o.block_h, a.block_c_out = o.block_c;
  a.prefix_h_out = o.prefix_h, a.prefix_c_out = o.prefix_c, a.count_out = o.count;
  return qle_cuda_prlstm(stream, &a);
}

// -- sLSTM -------------------------------------------------------------------------------------
int run_slstm(Ort::KernelContext& ctx, const Inputs& in, long block, bool seq, void* stream, OrtStatusPtr* st) {
  QleSlstmDims d;
  if ((*st = qle_check_slstm(in, block, seq, &d))) return 0;
  const QleSlstmOutputs o = qle_slstm_outputs(ctx, d, seq);
  QleCudaSlstm a{};
  a.mode = cuda_matrix_mode(in, 5), a.block = block;
  a.B = d.B, a.T = d.T, a.NH = d.NH, a.DH = d.DH;
  a.x = in.f(0), a.y = in.f(1), a.c = in.f(2), a.n = in.f(3), a.m = in.f(4);
  a.R = in.data[5], a.R_scale = in.scale(7), a.b = in.f(6);
  a.Y = o.Y, a.y_out = o.y, a.c_out = o.c, a.n_out = o.n, a.m_out = o.m;
  return qle_cuda_slstm(stream, &a);
}

// -- mLSTM -------------------------------------------------------------------------------------
int run_mlstm(Ort::KernelContext& ctx, const Inputs& in, bool seq, void* stream, OrtStatusPtr* st) {
  QleMlstmDims d;
  if ((*st = qle_check_mlstm(in, seq, &d))) return 0;
  QleMlstmArgs a{};
  qle_mlstm_args(in, d, qle_mlstm_outputs(ctx, d, seq), &a);
  return qle_cuda_mlstm(stream, &a);
}

struct Kernel {
  Kind kind;
  QleQMode mode;
  long block;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    auto run = [&](Ort::KernelContext& ctx, const Inputs& in) -> OrtStatusPtr {
      void* stream = ctx.GetGPUComputeStream();
      OrtStatusPtr st = nullptr;
      int err = 0;
      switch (kind) {
        case Kind::PrStep: err = run_prlstm(ctx, in, block, false, stream, &st); break;
        case Kind::PrSeq: err = run_prlstm(ctx, in, block, true, stream, &st); break;
        case Kind::SCell: err = run_slstm(ctx, in, block, false, stream, &st); break;
        case Kind::SSeq: err = run_slstm(ctx, in, block, true, stream, &st); break;
        case Kind::MCell: err = run_mlstm(ctx, in, false, stream, &st); break;
        case Kind::MSeq: err = run_mlstm(ctx, in, true, stream, &st); break;
      }
      if (st != nullptr || err == 0) return st;
      return qle_family_status(ORT_EP_FAIL, in.op,
                               "CUDA error " + std::to_string(err) + ": " + qle_cuda_error_string(err));
    };
    return qle_family_compute(context, kind, mode, &g_calls, run);
  }
};

// The inputs the checks read (the spec's `host`) in host memory, the others on the device.
struct Op : QleFamilyOpBase<Op, Kernel> {
  explicit Op(Kind k) : QleFamilyOpBase(k) {}
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  OrtMemType GetInputMemoryType(size_t i) const { return spec().on_host(i) ? OrtMemTypeCPUInput : OrtMemTypeDefault; }
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    QleQMode mode = QleQMode::F32;
    long block = 0;
    if (!spec().matrices.empty())
      if (OrtStatusPtr st = qle_read_qmode(api, info, GetName(), &mode, &block)) return st;
    *kernel = new Kernel{kind, mode, block};
    return nullptr;
  }
};

}  // namespace

void qle_family_cuda_ops(std::vector<const OrtCustomOp*>* out) {
  qle_family_append_ops<Op>(out);
}

// The CPU ops' names: the same six ops.
void qle_family_cuda_op_names(std::vector<const char*>* out) { qle_family_op_names(out); }

unsigned long long qle_family_cuda_compute_calls() { return g_calls.load(std::memory_order_relaxed); }
