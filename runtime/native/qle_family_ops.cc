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
//   "int4"          matrices int4; scales [..., ceil(K / block_size), N] (W_leaf_scale
//                                 [ceil(D / bs), 3H], W_merge_scale [ceil(2H / bs), 5H], W_unary_scale
//                                 [R, ceil(H / bs), 4H]; R_scale [4, NH, ceil(DH / bs), DH])
// Constant weights (initializers) are packed once per kernel, others on every call. The mLSTM ops
// hold no weights: float32 nodes in every mode.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <vector>

#include "qle_cpu.h"
#include "qle_family_ops.h"
#include "qle_ort_status.h"
#include "qle_prlstm.h"
#include "qle_qmatrix.h"
#include "qle_xlstm.h"

namespace {

constexpr const char* kIsaEnv = "QLSTM_EDGE_NATIVE_ISA";
constexpr long kParallelWork = 1L << 17;  // multiply-adds below which a call stays on one thread
constexpr long kMaxStackLevels = 62;      // PR-LSTM: count is int64

std::atomic<unsigned long long> g_calls{0};

constexpr ONNXTensorElementDataType F32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr ONNXTensorElementDataType I64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
constexpr ONNXTensorElementDataType F16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
constexpr ONNXTensorElementDataType ANY = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;

enum class Kind { PrStep, PrSeq, SCell, SSeq, MCell, MSeq };

struct OpSpec {
  Kind kind;
  const char* name;
  std::vector<const char*> inputs;                     // regular inputs, then the appended scales
  std::vector<ONNXTensorElementDataType> input_types;  // of the regular inputs in an fp32 node
  std::vector<ONNXTensorElementDataType> output_types;
  std::vector<size_t> matrices;  // the matrix inputs; a quantized node appends their scales in order
  bool x_in_product;             // input 0 enters a matrix product (float16 in an fp16 node)

  size_t regular() const { return input_types.size(); }
  bool is_matrix(size_t i) const { return std::find(matrices.begin(), matrices.end(), i) != matrices.end(); }
  // The inputs whose element type depends on the mode.
  bool mode_typed(size_t i) const { return is_matrix(i) || (i == 0 && x_in_product); }
  // Element type of input i in a node of mode m.
  ONNXTensorElementDataType type(QleQMode m, size_t i) const {
    if (i >= regular()) return F32;
    if (is_matrix(i)) return qle_qmode_weight_type(m);
    if (i == 0 && x_in_product && m == QleQMode::F16) return F16;
    return input_types[i];
  }
};

const OpSpec& spec(Kind kind) {
  static const std::vector<const char*> pr_in = {
      "x",       "block_h", "block_c", "prefix_h", "prefix_c",     "count",         "W_leaf",      "b_leaf",
      "W_merge", "b_merge", "W_unary", "b_unary",  "W_leaf_scale", "W_merge_scale", "W_unary_scale"};
  static const std::vector<ONNXTensorElementDataType> pr_types = {F32, F32, F32, F32, F32, I64,
                                                                  F32, F32, F32, F32, F32, F32};
  static const std::vector<ONNXTensorElementDataType> pr_out = {F32, F32, F32, F32, F32, I64};
  static const OpSpec specs[] = {
      {Kind::PrStep, "PRLSTMStep", pr_in, pr_types, pr_out, {6, 8, 10}, true},
      {Kind::PrSeq, "PRLSTMSequence", pr_in, pr_types, pr_out, {6, 8, 10}, true},
      {Kind::SCell, "sLSTMCell", {"x", "y", "c", "n", "m", "R", "b", "R_scale"},
       std::vector<ONNXTensorElementDataType>(7, F32), std::vector<ONNXTensorElementDataType>(4, F32), {5}, false},
      {Kind::SSeq, "sLSTMSequence", {"x", "y0", "c0", "n0", "m0", "R", "b", "R_scale"},
       std::vector<ONNXTensorElementDataType>(7, F32), std::vector<ONNXTensorElementDataType>(5, F32), {5}, false},
      {Kind::MCell, "mLSTMCell", {"q", "k", "v", "i", "f", "C", "n", "m", "q_scale", "k_scale", "eps"},
       std::vector<ONNXTensorElementDataType>(11, F32), std::vector<ONNXTensorElementDataType>(4, F32), {}, false},
      {Kind::MSeq, "mLSTMSequence", {"q", "k", "v", "i", "f", "C0", "n0", "m0", "q_scale", "k_scale", "eps"},
       std::vector<ONNXTensorElementDataType>(11, F32), std::vector<ONNXTensorElementDataType>(4, F32), {}, false},
  };
  return specs[(int)kind];
}

const char* type_name(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT4: return "int4";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    default: return "another element type";
  }
}

OrtStatusPtr make_status(OrtErrorCode code, const std::string& msg) {
  return Ort::GetApi().CreateStatus(code, msg.c_str());
}

std::string dims_text(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string((long long)d[i]);
  return s + "]";
}

// The node's inputs, checked against the op's contract with messages naming the op and tensor.
struct Inputs {
  const OpSpec& op;
  QleQMode mode;
  std::vector<std::vector<int64_t>> shape;
  std::vector<const void*> data;

  OrtStatusPtr load(const Ort::KernelContext& ctx) {
    const std::string name = op.name;
    const size_t regular = op.regular(), got_n = ctx.GetInputCount();
    const size_t n = qle_qmode_integer(mode) ? op.inputs.size() : regular;
    if (got_n != n) {
      if (op.matrices.empty())
        return make_status(ORT_INVALID_ARGUMENT,
                           name + ": expected " + std::to_string(n) + " inputs, got " + std::to_string(got_n));
      if (qle_qmode_integer(mode)) {
        std::string scales;
        for (size_t i = regular; i < n; ++i)
          scales += std::string(i == regular ? "" : (i + 1 == n ? " and " : ", ")) + op.inputs[i];
        return make_status(ORT_INVALID_ARGUMENT, name + ": quant_mode '" + qle_qmode_name(mode) + "' needs " +
                                                     std::to_string(n) + " inputs (the " + std::to_string(regular) +
                                                     " regular ones, then " + scales + "), got " +
                                                     std::to_string(got_n));
      }
      return make_status(ORT_INVALID_ARGUMENT, name + ": expected " + std::to_string(n) + " inputs for " +
                                                   qle_qmode_name(mode) + " weights, got " + std::to_string(got_n) +
                                                   " (scale inputs need quant_mode int8, int8-dynamic or int4)");
    }
    shape.resize(n);
    data.resize(n);
    for (size_t i = 0; i < n; ++i) {
      Ort::ConstValue v = ctx.GetInput(i);
      Ort::TensorTypeAndShapeInfo info = v.GetTensorTypeAndShapeInfo();
      const ONNXTensorElementDataType got = info.GetElementType(), want = op.type(mode, i);
      if (got != want) {
        std::string why;
        if (op.mode_typed(i))
          why = mode == QleQMode::F32 ? " (the node has no quant_mode attribute, so its weights are float32)"
                                      : std::string(" for quant_mode '") + qle_qmode_name(mode) + "'";
        return make_status(ORT_INVALID_ARGUMENT, name + ": input '" + op.inputs[i] + "' must be " + type_name(want) +
                                                     why + ", got " + type_name(got));
      }
      shape[i] = info.GetShape();
      data[i] = v.GetTensorRawData();
    }
    return nullptr;
  }

  const float* f(size_t i) const { return static_cast<const float*>(data[i]); }

  OrtStatusPtr rank(size_t i, size_t r, const char* layout) const {
    if (shape[i].size() == r) return nullptr;
    return make_status(ORT_INVALID_ARGUMENT, std::string(op.name) + ": input '" + op.inputs[i] + "' must have rank " +
                                                 std::to_string(r) + " (" + layout + "), got shape " +
                                                 dims_text(shape[i]));
  }

  OrtStatusPtr expect(size_t i, const std::vector<int64_t>& want, const char* layout) const {
    if (shape[i] == want) return nullptr;
    return make_status(ORT_INVALID_ARGUMENT, std::string(op.name) + ": input '" + op.inputs[i] + "' must have shape " +
                                                 layout + " = " + dims_text(want) + ", got " + dims_text(shape[i]));
  }

  // A 0-d scalar or a one-element vector.
  OrtStatusPtr scalar(size_t i, float* out) const {
    const std::vector<int64_t>& s = shape[i];
    if (!(s.empty() || (s.size() == 1 && s[0] == 1)))
      return make_status(ORT_INVALID_ARGUMENT, std::string(op.name) + ": input '" + op.inputs[i] +
                                                   "' must be a scalar (shape [] or [1]), got " + dims_text(s));
    *out = *f(i);
    return nullptr;
  }
};

float* output(Ort::KernelContext& ctx, size_t i, const std::vector<int64_t>& shape) {
  return ctx.GetOutput(i, shape.data(), shape.size()).GetTensorMutableData<float>();
}

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

// Scale shape of stacked matrices lead + [K, N] (exporters/quantize.py): int8 and int8-dynamic
// lead + [N], int4 lead + [ceil(K / block), N].
std::vector<int64_t> scale_shape(QleQMode mode, long block, std::vector<int64_t> lead, int64_t K, int64_t N) {
  if (mode == QleQMode::I4) lead.push_back((K + block - 1) / block);
  lead.push_back(N);
  return lead;
}

OrtStatusPtr dynamic_limit(const Inputs& in, const std::vector<std::pair<const char*, int64_t>>& sizes) {
  if (in.mode != QleQMode::I8Dyn) return nullptr;
  for (const auto& s : sizes)
    if (s.second > kQleMaxDynamicK)
      return make_status(ORT_INVALID_ARGUMENT, std::string(in.op.name) + ": int8-dynamic supports input sizes up to " +
                                                   std::to_string(kQleMaxDynamicK) + " (exact int32 sums), got " +
                                                   s.first + "=" + std::to_string((long long)s.second));
  return nullptr;
}

OrtStatusPtr error_status(const Inputs& in, const char* e) {
  return make_status(ORT_INVALID_ARGUMENT, std::string(in.op.name) + ": " + e);
}

// -- PR-LSTM -----------------------------------------------------------------------------------
// The matrices W_leaf, W_merge, W_unary and (integer modes) their scales for sizes D, H, R.
OrtStatusPtr check_pr_matrices(const Inputs& in, long block, int64_t D, int64_t H, int64_t R) {
  OrtStatusPtr st = nullptr;
  if ((st = in.expect(6, {D, 3 * H}, "[D, 3H] (input-major)")) ||
      (st = in.expect(8, {2 * H, 5 * H}, "[2H, 5H] (input-major)")) ||
      (st = in.expect(10, {R, H, 4 * H}, "[R, H, 4H] (input-major)")))
    return st;
  if (qle_qmode_integer(in.mode)) {
    const QleQMode m = in.mode;
    const bool i4 = m == QleQMode::I4;
    if ((st = in.expect(12, scale_shape(m, block, {}, D, 3 * H),
                        i4 ? "[ceil(D / block_size), 3H]" : "[3H] (one scale per output channel)")) ||
        (st = in.expect(13, scale_shape(m, block, {}, 2 * H, 5 * H),
                        i4 ? "[ceil(2H / block_size), 5H]" : "[5H] (one scale per output channel)")) ||
        (st = in.expect(14, scale_shape(m, block, {R}, H, 4 * H),
                        i4 ? "[R, ceil(H / block_size), 4H]" : "[R, 4H] (one scale per output channel of each slice)")))
      return st;
  }
  return dynamic_limit(in, {{"D", D}, {"2H", 2 * H}});
}

const char* pack_pr(const Inputs& in, long block, int64_t D, int64_t H, int64_t R, QlePrlstmWeights* w) {
  const bool integer = qle_qmode_integer(in.mode);
  return qle_prlstm_pack(in.mode, block, in.data[6], in.data[8], in.data[10], integer ? in.f(12) : nullptr,
                         integer ? in.f(13) : nullptr, integer ? in.f(14) : nullptr, (long)D, (long)H, (long)R, w);
}

OrtStatusPtr run_prlstm(Ort::KernelContext& ctx, const QleCpuKernels* k, const Inputs& in, const Packed& pk,
                        bool seq) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 3 : 2, seq ? "[B, T, D]" : "[B, D]")) || (st = in.rank(1, 3, "[B, K, H]")))
    return st;
  const std::vector<int64_t>& xs = in.shape[0];
  const int64_t B = xs[0], T = seq ? xs[1] : 1, D = xs.back(), K = in.shape[1][1], H = in.shape[1][2];
  if ((st = in.rank(10, 3, "[R, H, 4H]"))) return st;
  const int64_t R = in.shape[10][0];
  if ((st = in.expect(1, {B, K, H}, "[B, K, H] (B from x)")) || (st = in.expect(2, {B, K, H}, "[B, K, H]")) ||
      (st = in.expect(3, {B, K, H}, "[B, K, H]")) || (st = in.expect(4, {B, K, H}, "[B, K, H]")) ||
      (st = in.expect(5, {B}, "[B]")) || (st = check_pr_matrices(in, pk.block, D, H, R)) ||
      (st = in.expect(7, {3 * H}, "[3H]")) || (st = in.expect(9, {5 * H}, "[5H]")) ||
      (st = in.expect(11, {R, 4 * H}, "[R, 4H]")))
    return st;
  if (K < 1 || K > kMaxStackLevels)
    return make_status(ORT_INVALID_ARGUMENT, std::string(in.op.name) + ": the stack depth K (block_h's second "
                                             "dimension) must be in [1, " + std::to_string(kMaxStackLevels) +
                                             "], got " + std::to_string((long long)K));
  const int64_t* count = static_cast<const int64_t*>(in.data[5]);
  for (int64_t r = 0; r < B; ++r) {
    if (count[r] < 0 || count[r] > INT64_MAX - T)
      return make_status(ORT_INVALID_ARGUMENT, std::string(in.op.name) + ": input 'count' must hold token counts "
                                               "in [0, 2^63 - 1 - T]; row " + std::to_string((long long)r) +
                                               " has " + std::to_string((long long)count[r]));
  }
  if (!pk.error.empty()) return error_status(in, pk.error.c_str());
  QlePrlstmWeights local;
  const QlePrlstmWeights* w = pk.pr.get();
  if (w == nullptr) {
    if (const char* e = pack_pr(in, pk.block, D, H, R, &local)) return error_status(in, e);
    w = &local;
  }
  std::vector<float> xbuf;
  const float* x = in.f(0);
  if (in.mode == QleQMode::F16) {  // x float16: its values as float32
    xbuf.resize((size_t)(B * T * D));
    qle_f16_to_f32((long)(B * T * D), static_cast<const uint16_t*>(in.data[0]), xbuf.data());
    x = xbuf.data();
  }
  const std::vector<int64_t> state = {B, K, H};
  QlePrlstmArgs a{};
  a.B = B, a.T = T, a.D = D, a.H = H, a.K = K, a.R = R;
  a.x = x;
  a.block_h = in.f(1), a.block_c = in.f(2), a.prefix_h = in.f(3), a.prefix_c = in.f(4);
  a.count = count;
  a.w = w;
  a.b_leaf = in.f(7), a.b_merge = in.f(9), a.b_unary = in.f(11);
  a.Y = output(ctx, 0, seq ? std::vector<int64_t>{B, T, H} : std::vector<int64_t>{B, H});
  a.block_h_out = output(ctx, 1, state);
  a.block_c_out = output(ctx, 2, state);
  a.prefix_h_out = output(ctx, 3, state);
  a.prefix_c_out = output(ctx, 4, state);
  const int64_t count_shape[1] = {B};
  a.count_out = ctx.GetOutput(5, count_shape, 1).GetTensorMutableData<int64_t>();
  Ranges<QlePrlstmArgs, qle_prlstm_rows> job{k, &a, (long)B, (long)B};
  job.run(ctx, (long)(B * T * (D * 3 * H + 2 * (10 * H * H + R * 4 * H * H))));
  return nullptr;
}

// -- sLSTM -------------------------------------------------------------------------------------
// R [4, NH, DH, DH] and (integer modes) R_scale.
OrtStatusPtr check_slstm_matrices(const Inputs& in, long block, int64_t NH, int64_t DH) {
  OrtStatusPtr st = nullptr;
  if ((st = in.expect(5, {4, NH, DH, DH}, "[4, NH, DH, DH]"))) return st;
  if (qle_qmode_integer(in.mode) &&
      (st = in.expect(7, scale_shape(in.mode, block, {4, NH}, DH, DH),
                      in.mode == QleQMode::I4 ? "[4, NH, ceil(DH / block_size), DH]"
                                              : "[4, NH, DH] (one scale per output channel of each slice)")))
    return st;
  return dynamic_limit(in, {{"DH", DH}});
}

const char* pack_slstm(const Inputs& in, long block, int64_t NH, int64_t DH, std::vector<QleQMatrix>* R) {
  return qle_slstm_pack(in.mode, block, in.data[5], qle_qmode_integer(in.mode) ? in.f(7) : nullptr, (long)NH,
                        (long)DH, R);
}

OrtStatusPtr run_slstm(Ort::KernelContext& ctx, const QleCpuKernels* k, const Inputs& in, const Packed& pk,
                       bool seq) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 3 : 2, seq ? "[B, T, 4H]" : "[B, 4H]")) || (st = in.rank(5, 4, "[4, NH, DH, DH]")))
    return st;
  const std::vector<int64_t>& xs = in.shape[0];
  const int64_t B = xs[0], T = seq ? xs[1] : 1, NH = in.shape[5][1], DH = in.shape[5][2], H = NH * DH;
  if ((st = check_slstm_matrices(in, pk.block, NH, DH)) ||
      (st = in.expect(0, seq ? std::vector<int64_t>{B, T, 4 * H} : std::vector<int64_t>{B, 4 * H},
                      seq ? "[B, T, 4H] (H = NH * DH from R)" : "[B, 4H] (H = NH * DH from R)")))
    return st;
  for (size_t i = 1; i <= 4; ++i)
    if ((st = in.expect(i, {B, H}, "[B, H]"))) return st;
  if ((st = in.expect(6, {4 * H}, "[4H]"))) return st;
  if (!pk.error.empty()) return error_status(in, pk.error.c_str());
  std::vector<QleQMatrix> local;
  const std::vector<QleQMatrix>* R = pk.slstm_R.get();
  if (R == nullptr) {
    if (const char* e = pack_slstm(in, pk.block, NH, DH, &local)) return error_status(in, e);
    R = &local;
  }
  QleSlstmArgs a{};
  a.B = B, a.T = T, a.NH = NH, a.DH = DH;
  a.x = in.f(0), a.y = in.f(1), a.c = in.f(2), a.n = in.f(3), a.m = in.f(4), a.R = R->data(), a.b = in.f(6);
  const std::vector<int64_t> sshape = {B, H};
  size_t o = 0;
  a.Y = seq ? output(ctx, o++, {B, T, H}) : nullptr;
  a.y_out = output(ctx, o++, sshape);
  a.c_out = output(ctx, o++, sshape);
  a.n_out = output(ctx, o++, sshape);
  a.m_out = output(ctx, o++, sshape);
  Ranges<QleSlstmArgs, qle_slstm_rows> job{k, &a, (long)B, (long)B};
  job.run(ctx, (long)(B * T * 4 * H * DH));
  return nullptr;
}

// -- mLSTM -------------------------------------------------------------------------------------
OrtStatusPtr run_mlstm(Ort::KernelContext& ctx, const QleCpuKernels* k, const Inputs& in, bool seq) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 4 : 3, seq ? "[B, T, NH, DK]" : "[B, NH, DK]")) ||
      (st = in.rank(2, seq ? 4 : 3, seq ? "[B, T, NH, DV]" : "[B, NH, DV]")))
    return st;
  const std::vector<int64_t>& qs = in.shape[0];
  const int64_t B = qs[0], T = seq ? qs[1] : 1, NH = qs[seq ? 2 : 1], DK = qs.back(), DV = in.shape[2].back();
  const std::vector<int64_t> lead = seq ? std::vector<int64_t>{B, T, NH} : std::vector<int64_t>{B, NH};
  std::vector<int64_t> kshape = lead, vshape = lead;
  kshape.push_back(DK);
  vshape.push_back(DV);
  const char* gate_layout = seq ? "[B, T, NH]" : "[B, NH]";
  if ((st = in.expect(1, kshape, seq ? "[B, T, NH, DK] (as q)" : "[B, NH, DK] (as q)")) ||
      (st = in.expect(2, vshape, seq ? "[B, T, NH, DV]" : "[B, NH, DV]")) ||
      (st = in.expect(3, lead, gate_layout)) || (st = in.expect(4, lead, gate_layout)) ||
      (st = in.expect(5, {B, NH, DK, DV}, "[B, NH, DK, DV]")) || (st = in.expect(6, {B, NH, DK}, "[B, NH, DK]")) ||
      (st = in.expect(7, {B, NH, 1}, "[B, NH, 1]")))
    return st;
  QleMlstmArgs a{};
  if ((st = in.scalar(8, &a.q_scale)) || (st = in.scalar(9, &a.k_scale)) || (st = in.scalar(10, &a.eps)))
    return st;
  a.B = B, a.T = T, a.NH = NH, a.DK = DK, a.DV = DV;
  a.q = in.f(0), a.k = in.f(1), a.v = in.f(2), a.i = in.f(3), a.f = in.f(4);
  a.C = in.f(5), a.n = in.f(6), a.m = in.f(7);
  std::vector<int64_t> hshape = lead;
  hshape.push_back(DV);
  a.Hout = output(ctx, 0, hshape);
  a.C_out = output(ctx, 1, {B, NH, DK, DV});
  a.n_out = output(ctx, 2, {B, NH, DK});
  a.m_out = output(ctx, 3, {B, NH, 1});
  Ranges<QleMlstmArgs, qle_mlstm_streams> job{k, &a, (long)(B * NH), (long)(B * NH)};
  job.run(ctx, (long)(B * NH * T * DK * DV * 3));
  return nullptr;
}

struct Kernel {
  Kind kind;
  const QleCpuKernels* k;
  Packed packed;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    const OpSpec& op = spec(kind);
    return qle_guarded(op.name, [&]() -> OrtStatusPtr {
      g_calls.fetch_add(1, std::memory_order_relaxed);
      Ort::KernelContext ctx(context);
      Inputs in{op, packed.mode, {}, {}};
      if (OrtStatusPtr st = in.load(ctx)) return st;
      switch (kind) {
        case Kind::PrStep: return run_prlstm(ctx, k, in, packed, false);
        case Kind::PrSeq: return run_prlstm(ctx, k, in, packed, true);
        case Kind::SCell: return run_slstm(ctx, k, in, packed, false);
        case Kind::SSeq: return run_slstm(ctx, k, in, packed, true);
        case Kind::MCell: return run_mlstm(ctx, k, in, false);
        case Kind::MSeq: return run_mlstm(ctx, k, in, true);
      }
      return nullptr;
    });
  }
};

// Packs a quantized node's weights at kernel creation when its matrices (and scales) are constant
// initializers of the contract's types and shapes; otherwise leaves it to each Compute call, which
// also reports what is wrong. fp32 weights need no packing (the kernels read them in place).
void prepack(const OrtKernelInfo* info, const OpSpec& op, Packed* pk) {
  if (pk->mode == QleQMode::F32 || op.matrices.empty()) return;
  Ort::ConstKernelInfo ki(info);
  const size_t n = qle_qmode_integer(pk->mode) ? op.inputs.size() : op.regular();
  if (ki.GetInputCount() != n) return;
  Inputs in{op, pk->mode, std::vector<std::vector<int64_t>>(n), std::vector<const void*>(n, nullptr)};
  std::vector<size_t> idx = op.matrices;
  for (size_t i = op.regular(); i < n; ++i) idx.push_back(i);
  for (size_t i : idx) {
    int is_const = 0;
    Ort::ConstValue v = ki.GetTensorConstantInput(i, &is_const);
    if (!is_const || v == nullptr) return;
    Ort::TensorTypeAndShapeInfo t = v.GetTensorTypeAndShapeInfo();
    if (t.GetElementType() != op.type(pk->mode, i)) return;
    in.shape[i] = t.GetShape();
    in.data[i] = v.GetTensorRawData();
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
    if (rejected(check_pr_matrices(in, pk->block, D, H, R))) return;
    std::unique_ptr<QlePrlstmWeights> w(new QlePrlstmWeights);
    if ((err = pack_pr(in, pk->block, D, H, R, w.get())) == nullptr) pk->pr = std::move(w);
  } else {
    if (in.shape[5].size() != 4) return;
    const int64_t NH = in.shape[5][1], DH = in.shape[5][2];
    if (rejected(check_slstm_matrices(in, pk->block, NH, DH))) return;
    std::unique_ptr<std::vector<QleQMatrix>> R(new std::vector<QleQMatrix>);
    if ((err = pack_slstm(in, pk->block, NH, DH, R.get())) == nullptr) pk->slstm_R = std::move(R);
  }
  if (err != nullptr) pk->error = err;
}

// x and the matrix inputs take whatever element type the node's mode gives them (checked by
// Inputs::load); the appended scale inputs are optional (present in the integer modes).
struct Op : Ort::CustomOpBase<Op, Kernel, true> {
  explicit Op(Kind k) : kind(k) {}
  const char* GetName() const { return spec(kind).name; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return spec(kind).inputs.size(); }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    const OpSpec& s = spec(kind);
    return s.mode_typed(i) ? ANY : s.type(QleQMode::F32, i);
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return i < spec(kind).regular() ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
  }
  size_t GetOutputTypeCount() const { return spec(kind).output_types.size(); }
  ONNXTensorElementDataType GetOutputType(size_t i) const { return spec(kind).output_types[i]; }
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    const char* isa = getenv(kIsaEnv);
    const char* err = nullptr;
    const QleCpuKernels* k = qle_select_isa(isa, &err);
    if (k == nullptr)
      return make_status(ORT_INVALID_ARGUMENT, std::string(GetName()) + ": " + kIsaEnv + "=" + isa + ": " + err);
    std::unique_ptr<Kernel> kern(new Kernel{kind, k, {}});
    const OpSpec& op = spec(kind);
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
  Kind kind;
};

}  // namespace

void qle_family_ops(std::vector<const OrtCustomOp*>* out) {
  static const Op ops[] = {Op(Kind::PrStep), Op(Kind::PrSeq), Op(Kind::SCell),
                           Op(Kind::SSeq),   Op(Kind::MCell), Op(Kind::MSeq)};
  for (const Op& op : ops) out->push_back(&op);
}

void qle_family_op_names(std::vector<const char*>* out) {
  for (Kind k : {Kind::PrStep, Kind::PrSeq, Kind::SCell, Kind::SSeq, Kind::MCell, Kind::MSeq})
    out->push_back(spec(k).name);
}

void qle_family_quantized_op_names(std::vector<const char*>* out) {
  for (Kind k : {Kind::PrStep, Kind::PrSeq, Kind::SCell, Kind::SSeq, Kind::MCell, Kind::MSeq})
    if (!spec(k).matrices.empty()) out->push_back(spec(k).name);
}

unsigned long long qle_family_compute_calls() { return g_calls.load(std::memory_order_relaxed); }
