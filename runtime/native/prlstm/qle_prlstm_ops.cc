// onnxruntime custom ops (CPU) of the PR-LSTM and xLSTM families, domain qlstm_edge, op-set 1:
//   PRLSTMStep    (x[B,D], block_h[B,K,H], block_c, prefix_h, prefix_c, count[B] int64,
//                  W_leaf[D,3H], b_leaf[3H], W_merge[2H,5H], b_merge[5H], W_unary[R,H,4H],
//                  b_unary[R,4H]) -> y[B,H], block_h', block_c', prefix_h', prefix_c', count'
//   PRLSTMSequence(x[B,T,D], ...) -> Y[B,T,H], ...
//   sLSTMCell     (x[B,4H], y[B,H], c, n, m, R[4,NH,DH,DH], b[4H]) -> y', c', n', m'
//   sLSTMSequence (x[B,T,4H], y0, c0, n0, m0, R, b) -> Y[B,T,H], y_T, c_T, n_T, m_T
//   mLSTMCell     (q[B,NH,DK], k[B,NH,DK], v[B,NH,DV], i[B,NH], f[B,NH], C[B,NH,DK,DV],
//                  n[B,NH,DK], m[B,NH,1], q_scale[], k_scale[], eps[]) -> h[B,NH,DV], C', n', m'
//   mLSTMSequence (q[B,T,NH,DK], k, v[B,T,NH,DV], i[B,T,NH], f, C0, n0, m0, q_scale, k_scale, eps)
//                  -> H[B,T,NH,DV], C_T, n_T, m_T
// The kernels (qle_prlstm.cc, qle_xlstm.cc) follow the ops' function bodies in
// qlstm_edge/families/{prlstm,xlstm}/export.py. The including library must have called
// Ort::InitApi before onnxruntime creates these kernels (RegisterCustomOps does).
//
// Quantized nodes (exporters/quantize.py, custom-op contract version 1) of the PR-LSTM and sLSTM ops:
// the quant_mode / block_size attributes and the element types select the mode (qle_qmatrix.h):
//   (no attribute)  fp32          every input float32 (count int64)
//   "fp16"          W_leaf, W_merge, W_unary (PR-LSTM) / R (sLSTM) float16; the PR-LSTM's x float16
//                                 (the sLSTM's x enters no product: float32)
//   "int8",         matrices int8 [..., K, N]; scales appended (PR-LSTM: W_leaf_scale [3H],
//   "int8-dynamic"                W_merge_scale [5H], W_unary_scale [R, 4H]; sLSTM: R_scale [4, NH, DH])
//   "int4"          matrices uint8 [..., K, ceil(N / 2)] (int4 packed two per byte) or ONNX INT4
//                                 [..., K, N] (files exported before the packed form); scales
//                                 [..., ceil(K / block_size), N] (W_leaf_scale
//                                 [ceil(D / bs), 3H], W_merge_scale [ceil(2H / bs), 5H], W_unary_scale
//                                 [R, ceil(H / bs), 4H]; R_scale [4, NH, ceil(DH / bs), DH])
// Constant weights (initializers) are packed once per kernel, others on every call. The mLSTM ops
// hold no weights: float32 nodes in every mode.
// The contract (op specs, input checks and their messages) is qle_family_contract.h, shared with
// the CUDA ops; this unit adds the CPU's part: weight packing, argument filling, threading.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <atomic>
#include <memory>
#include <stdlib.h>
#include <string>
#include <vector>

#include "qle_cpu.h"
#include "qle_contract.h"
#include "qle_prlstm_ops.h"
#include "qle_ort_status.h"
#include "qle_prlstm.h"
#include "qle_qmatrix.h"
#include "qle_shape.h"
#include "qle_xlstm.h"

namespace {

constexpr const char* kIsaEnv = "QLSTM_EDGE_NATIVE_ISA";
constexpr long kParallelWork = 1L << 17;  // multiply-adds below which a call stays on one thread

std::atomic<unsigned long long> g_calls{0};

using Kind = QleFamilyKind;
using Inputs = QleFamilyInputs;

// Splits [0, total) into up to `parts` contiguous ranges, run by onnxruntime's intra-op pool.
template <typename Args, void (*Fn)(const QleCpuKernels*, const Args&, long, long)>
struct Ranges {
  const QleCpuKernels* k;
  const Args* a;
  long total, parts;
  static void task(void* p, size_t i) {
    const Ranges& r = *static_cast<const Ranges*>(p);
    const long lo = r.total * (long)i / r.parts, hi = r.total * ((long)i + 1) / r.parts;
    Fn(r.k, *r.a, lo, hi);
  }
  void run(Ort::KernelContext& ctx, long work) {
    if (parts > 1 && work >= kParallelWork)
      ctx.ParallelFor(task, (size_t)parts, 0, this);
    else
      Fn(k, *a, 0, total);
  }
};

// Weights of a node as its kernel packed them at creation (constant initializers; else empty and
// packed per call).
struct Packed {
  QleQMode mode = QleQMode::F32;
  long block = 0;
  std::unique_ptr<QlePrlstmWeights> pr;
  std::unique_ptr<std::vector<QleQMatrix>> slstm_R;
  std::string error;  // packing the constants failed: every call reports it
};

OrtStatusPtr error_status(const Inputs& in, const char* e) {
  return qle_family_status(ORT_INVALID_ARGUMENT, in.op, e);
}

// -- PR-LSTM -----------------------------------------------------------------------------------
const char* pack_pr(const Inputs& in, long block, int64_t D, int64_t H, int64_t R, QlePrlstmWeights* w) {
  const ONNXTensorElementDataType types[3] = {in.type[6], in.type[8], in.type[10]};
  return qle_prlstm_pack(in.mode, block, in.data[6], in.data[8], in.data[10], types, in.scale(12), in.scale(13),
                         in.scale(14), (long)D, (long)H, (long)R, w);
}

OrtStatusPtr run_prlstm(Ort::KernelContext& ctx, const QleCpuKernels* k, const Inputs& in, const Packed& pk,
                        bool seq) {
  QlePrDims d;
  if (OrtStatusPtr st = qle_check_prlstm(in, pk.block, seq, &d)) return st;
  if (!pk.error.empty()) return error_status(in, pk.error.c_str());
  QlePrlstmWeights local;
  const QlePrlstmWeights* w = pk.pr.get();
  if (w == nullptr) {
    if (const char* e = pack_pr(in, pk.block, d.D, d.H, d.R, &local)) return error_status(in, e);
    w = &local;
  }
  const int64_t B = d.B, T = d.T, D = d.D, H = d.H, R = d.R;
  std::vector<float> xbuf;
  const float* x = in.f(0);
  if (in.mode == QleQMode::F16) {  // x float16: its values as float32
    xbuf.resize((size_t)(B * T * D));
    qle_f16_to_f32((long)(B * T * D), static_cast<const uint16_t*>(in.data[0]), xbuf.data());
    x = xbuf.data();
  }
  const QlePrOutputs o = qle_prlstm_outputs(ctx, d, seq);
  QlePrlstmArgs a{};
  a.B = B, a.T = T, a.D = D, a.H = H, a.K = d.K, a.R = R;
  a.x = x;
  a.block_h = in.f(1), a.block_c = in.f(2), a.prefix_h = in.f(3), a.prefix_c = in.f(4);
  a.count = static_cast<const int64_t*>(in.data[5]);
  a.w = w;
  a.b_leaf = in.f(7), a.b_merge = in.f(9), a.b_unary = in.f(11);
  a.Y = o.Y, a.block_h_out = o.block_h, a.block_c_out = o.block_c;
  a.prefix_h_out = o.prefix_h, a.prefix_c_out = o.prefix_c, a.count_out = o.count;
  Ranges<QlePrlstmArgs, qle_prlstm_rows> job{k, &a, (long)B, (long)B};
  // per token; below 2^62 within the checked bounds (qle_shape.h)
  const int64_t token = D * 3 * H + 2 * (10 + 4 * R) * H * H;
  job.run(ctx, (long)qle_mul_sat(qle_mul_sat(B, T), token));
  return nullptr;
}

// -- sLSTM -------------------------------------------------------------------------------------
const char* pack_slstm(const Inputs& in, long block, int64_t NH, int64_t DH, std::vector<QleQMatrix>* R) {
  return qle_slstm_pack(in.mode, block, in.data[5], in.type[5], in.scale(7), (long)NH, (long)DH, R);
}

OrtStatusPtr run_slstm(Ort::KernelContext& ctx, const QleCpuKernels* k, const Inputs& in, const Packed& pk,
                       bool seq) {
  QleSlstmDims d;
  if (OrtStatusPtr st = qle_check_slstm(in, pk.block, seq, &d)) return st;
  if (!pk.error.empty()) return error_status(in, pk.error.c_str());
  std::vector<QleQMatrix> local;
  const std::vector<QleQMatrix>* R = pk.slstm_R.get();
  if (R == nullptr) {
    if (const char* e = pack_slstm(in, pk.block, d.NH, d.DH, &local)) return error_status(in, e);
    R = &local;
  }
  const QleSlstmOutputs o = qle_slstm_outputs(ctx, d, seq);
  QleSlstmArgs a{};
  a.B = d.B, a.T = d.T, a.NH = d.NH, a.DH = d.DH;
  a.x = in.f(0), a.y = in.f(1), a.c = in.f(2), a.n = in.f(3), a.m = in.f(4), a.R = R->data(), a.b = in.f(6);
  a.Y = o.Y, a.y_out = o.y, a.c_out = o.c, a.n_out = o.n, a.m_out = o.m;
  Ranges<QleSlstmArgs, qle_slstm_rows> job{k, &a, (long)d.B, (long)d.B};
  job.run(ctx, (long)qle_mul_sat(qle_mul_sat(d.B, d.T), qle_mul_sat(4 * d.H, d.DH)));
  return nullptr;
}

// -- mLSTM -------------------------------------------------------------------------------------
OrtStatusPtr run_mlstm(Ort::KernelContext& ctx, const QleCpuKernels* k, const Inputs& in, bool seq) {
  QleMlstmDims d;
  if (OrtStatusPtr st = qle_check_mlstm(in, seq, &d)) return st;
  QleMlstmArgs a{};
  qle_mlstm_args(in, d, qle_mlstm_outputs(ctx, d, seq), &a);
  const long streams = (long)(d.B * d.NH);
  Ranges<QleMlstmArgs, qle_mlstm_streams> job{k, &a, streams, streams};
  job.run(ctx, (long)qle_mul_sat(qle_mul_sat(streams, d.T), qle_mul_sat(3 * d.DK, d.DV)));
  return nullptr;
}

struct Kernel {
  Kind kind;
  const QleCpuKernels* k;
  Packed packed;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    auto run = [&](Ort::KernelContext& ctx, const Inputs& in) -> OrtStatusPtr {
      switch (kind) {
        case Kind::PrStep: return run_prlstm(ctx, k, in, packed, false);
        case Kind::PrSeq: return run_prlstm(ctx, k, in, packed, true);
        case Kind::SCell: return run_slstm(ctx, k, in, packed, false);
        case Kind::SSeq: return run_slstm(ctx, k, in, packed, true);
        case Kind::MCell: return run_mlstm(ctx, k, in, false);
        case Kind::MSeq: return run_mlstm(ctx, k, in, true);
      }
      return nullptr;
    };
    return qle_family_compute(context, kind, packed.mode, &g_calls, run);
  }
};

// Packs a quantized node's weights at kernel creation when its matrices (and scales) are constant
// initializers of the contract's types and shapes; otherwise leaves it to each Compute call, which
// also reports what is wrong. fp32 weights need no packing (the kernels read them in place).
void prepack(const OrtKernelInfo* info, const QleFamilyOpSpec& op, Packed* pk) {
  if (pk->mode == QleQMode::F32 || op.matrices.empty()) return;
  Ort::ConstKernelInfo ki(info);
  const size_t n = qle_qmode_integer(pk->mode) ? op.inputs.size() : op.regular();
  if (ki.GetInputCount() != n) return;
  Inputs in{op, pk->mode, std::vector<std::vector<int64_t>>(n), std::vector<const void*>(n, nullptr),
            std::vector<ONNXTensorElementDataType>(n, ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED)};
  std::vector<size_t> idx = op.matrices;
  for (size_t i = op.regular(); i < n; ++i) idx.push_back(i);
  for (size_t i : idx) {
    int is_const = 0;
    Ort::ConstValue v = ki.GetTensorConstantInput(i, &is_const);
    if (!is_const || v == nullptr) return;
    Ort::TensorTypeAndShapeInfo t = v.GetTensorTypeAndShapeInfo();
    if (!op.accepts(pk->mode, i, t.GetElementType())) return;
    in.shape[i] = t.GetShape();
    in.data[i] = v.GetTensorRawData();
    in.type[i] = t.GetElementType();
  }
  auto rejected = [](OrtStatusPtr st) {
    if (st == nullptr) return false;
    Ort::GetApi().ReleaseStatus(st);
    return true;
  };
  const char* err = nullptr;
  if (op.kind == Kind::PrStep || op.kind == Kind::PrSeq) {
    if (in.shape[6].size() != 2 || in.shape[10].size() != 3) return;
    const int64_t D = in.shape[6][0], R = in.shape[10][0], H = in.shape[10][1];
    if (rejected(qle_check_pr_matrices(in, pk->block, D, H, R))) return;
    std::unique_ptr<QlePrlstmWeights> w(new QlePrlstmWeights);
    if ((err = pack_pr(in, pk->block, D, H, R, w.get())) == nullptr) pk->pr = std::move(w);
  } else {
    if (in.shape[5].size() != 4) return;
    const int64_t NH = in.shape[5][1], DH = in.shape[5][2];
    if (rejected(qle_check_slstm_matrices(in, pk->block, NH, DH))) return;
    std::unique_ptr<std::vector<QleQMatrix>> R(new std::vector<QleQMatrix>);
    if ((err = pack_slstm(in, pk->block, NH, DH, R.get())) == nullptr) pk->slstm_R = std::move(R);
  }
  if (err != nullptr) pk->error = err;
}

// Every input in host memory (the CPU execution provider's).
struct Op : QleFamilyOpBase<Op, Kernel> {
  explicit Op(Kind k) : QleFamilyOpBase(k) {}
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    const char* isa = getenv(kIsaEnv);
    const char* err = nullptr;
    const QleCpuKernels* k = qle_select_isa(isa, &err);
    if (k == nullptr)
      return qle_family_status(ORT_INVALID_ARGUMENT, spec(), std::string(kIsaEnv) + "=" + isa + ": " + err);
    std::unique_ptr<Kernel> kern(new Kernel{kind, k, {}});
    const QleFamilyOpSpec& op = spec();
    if (!op.matrices.empty())
      if (OrtStatusPtr st = qle_read_qmode(api, info, GetName(), &kern->packed.mode, &kern->packed.block)) return st;
    if (OrtStatusPtr st = qle_guarded(GetName(), [&]() -> OrtStatusPtr {
          prepack(info, op, &kern->packed);
          return nullptr;
        }))
      return st;
    *kernel = kern.release();
    return nullptr;
  }
};

}  // namespace

void qle_family_ops(std::vector<const OrtCustomOp*>* out) {
  qle_family_append_ops<Op>(out);
}

void qle_family_op_names(std::vector<const char*>* out) {
  for (Kind k : kQleFamilyKinds) out->push_back(qle_family_spec(k).name);
}

void qle_family_quantized_op_names(std::vector<const char*>* out) {
  for (Kind k : kQleFamilyKinds)
    if (!qle_family_spec(k).matrices.empty()) out->push_back(qle_family_spec(k).name);
}

unsigned long long qle_family_compute_calls() { return g_calls.load(std::memory_order_relaxed); }
