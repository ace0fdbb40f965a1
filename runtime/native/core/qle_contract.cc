// The PR-LSTM and xLSTM ops' contract (qle_family_contract.h): specs and input checks.
#include "qle_contract.h"

#include <initializer_list>

#include "qle_shape.h"

namespace {

constexpr long kMaxStackLevels = 62;  // PR-LSTM: count is int64

constexpr ONNXTensorElementDataType F32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr ONNXTensorElementDataType I64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
constexpr ONNXTensorElementDataType F16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;

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

std::string dims_text(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string((long long)d[i]);
  return s + "]";
}

float* output(Ort::KernelContext& ctx, size_t i, const std::vector<int64_t>& shape) {
  return ctx.GetOutput(i, shape.data(), shape.size()).GetTensorMutableData<float>();
}

OrtStatusPtr invalid(const QleFamilyInputs& in, const std::string& msg) {
  return qle_family_status(ORT_INVALID_ARGUMENT, in.op, msg);
}

// Scale shape of stacked matrices lead + [K, N] (exporters/quantize.py): int8 and int8-dynamic
// lead + [N], int4 lead + [ceil(K / block), N].
std::vector<int64_t> scale_shape(QleQMode mode, long block, std::vector<int64_t> lead, int64_t K, int64_t N) {
  if (mode == QleQMode::I4) lead.push_back(qle_ceil_div(K, block));
  lead.push_back(N);
  return lead;
}

// The first failed size bound (qle_size_error texts, empty when met), or null.
OrtStatusPtr size_bounds(const QleFamilyInputs& in, std::initializer_list<std::string> errors) {
  for (const std::string& e : errors)
    if (!e.empty()) return invalid(in, e);
  return nullptr;
}

// int8-dynamic: the products' input sizes must keep the int32 sums exact.
OrtStatusPtr dynamic_limit(const QleFamilyInputs& in, const std::vector<std::pair<const char*, int64_t>>& sizes) {
  if (in.mode != QleQMode::I8Dyn) return nullptr;
  for (const auto& s : sizes)
    if (s.second > kQleMaxDynamicK)
      return invalid(in, std::string("int8-dynamic supports input sizes up to ") + std::to_string(kQleMaxDynamicK) +
                             " (exact int32 sums), got " + s.first + "=" + std::to_string((long long)s.second));
  return nullptr;
}

}  // namespace

ONNXTensorElementDataType QleFamilyOpSpec::type(QleQMode m, size_t i) const {
  if (i >= regular()) return F32;
  if (i == 0 && x_in_product && m == QleQMode::F16) return F16;
  return input_types[i];
}

bool QleFamilyOpSpec::accepts(QleQMode m, size_t i, ONNXTensorElementDataType t) const {
  return i < regular() && is_matrix(i) ? qle_qmode_accepts(m, t) : t == type(m, i);
}

const QleFamilyOpSpec& qle_family_spec(QleFamilyKind kind) {
  using K = QleFamilyKind;
  using Types = std::vector<ONNXTensorElementDataType>;
  static const std::vector<const char*> pr_in = {
      "x",       "block_h", "block_c", "prefix_h", "prefix_c",     "count",         "W_leaf",      "b_leaf",
      "W_merge", "b_merge", "W_unary", "b_unary",  "W_leaf_scale", "W_merge_scale", "W_unary_scale"};
  static const Types pr_types = {F32, F32, F32, F32, F32, I64, F32, F32, F32, F32, F32, F32};
  static const Types pr_out = {F32, F32, F32, F32, F32, I64};
  static const QleFamilyOpSpec specs[] = {
      {K::PrStep, "PRLSTMStep", pr_in, pr_types, pr_out, {6, 8, 10}, true, {5}},
      {K::PrSeq, "PRLSTMSequence", pr_in, pr_types, pr_out, {6, 8, 10}, true, {5}},
      {K::SCell, "sLSTMCell", {"x", "y", "c", "n", "m", "R", "b", "R_scale"}, Types(7, F32), Types(4, F32), {5},
       false, {}},
      {K::SSeq, "sLSTMSequence", {"x", "y0", "c0", "n0", "m0", "R", "b", "R_scale"}, Types(7, F32), Types(5, F32),
       {5}, false, {}},
      {K::MCell, "mLSTMCell", {"q", "k", "v", "i", "f", "C", "n", "m", "q_scale", "k_scale", "eps"}, Types(11, F32),
       Types(4, F32), {}, false, {8, 9, 10}},
      {K::MSeq, "mLSTMSequence", {"q", "k", "v", "i", "f", "C0", "n0", "m0", "q_scale", "k_scale", "eps"},
       Types(11, F32), Types(4, F32), {}, false, {8, 9, 10}},
  };
  return specs[(int)kind];
}

OrtStatusPtr qle_family_status(OrtErrorCode code, const QleFamilyOpSpec& op, const std::string& msg) {
  return Ort::GetApi().CreateStatus(code, (std::string(op.name) + ": " + msg).c_str());
}

OrtStatusPtr QleFamilyInputs::load(const Ort::KernelContext& ctx) {
  const size_t regular = op.regular(), got_n = ctx.GetInputCount();
  const size_t n = qle_qmode_integer(mode) ? op.inputs.size() : regular;
  if (got_n != n) {
    if (op.matrices.empty())
      return invalid(*this, "expected " + std::to_string(n) + " inputs, got " + std::to_string(got_n));
    if (qle_qmode_integer(mode)) {
      std::string scales;
      for (size_t i = regular; i < n; ++i)
        scales += std::string(i == regular ? "" : (i + 1 == n ? " and " : ", ")) + op.inputs[i];
      return invalid(*this, std::string("quant_mode '") + qle_qmode_name(mode) + "' needs " + std::to_string(n) +
                                " inputs (the " + std::to_string(regular) + " regular ones, then " + scales +
                                "), got " + std::to_string(got_n));
    }
    return invalid(*this, "expected " + std::to_string(n) + " inputs for " + qle_qmode_name(mode) +
                              " weights, got " + std::to_string(got_n) +
                              " (scale inputs need quant_mode int8, int8-dynamic or int4)");
  }
  shape.resize(n);
  data.resize(n);
  type.resize(n);
  for (size_t i = 0; i < n; ++i) {
    Ort::ConstValue v = ctx.GetInput(i);
    Ort::TensorTypeAndShapeInfo info = v.GetTensorTypeAndShapeInfo();
    const ONNXTensorElementDataType got = info.GetElementType();
    if (!op.accepts(mode, i, got)) {
      std::string why;
      if (op.mode_typed(i))
        why = mode == QleQMode::F32 ? " (the node has no quant_mode attribute, so its weights are float32)"
                                    : std::string(" for quant_mode '") + qle_qmode_name(mode) + "'";
      const char* want = op.is_matrix(i) ? qle_qmode_weight_types(mode) : type_name(op.type(mode, i));
      return invalid(*this, std::string("input '") + op.inputs[i] + "' must be " + want + why + ", got " +
                                type_name(got));
    }
    shape[i] = info.GetShape();
    data[i] = v.GetTensorRawData();
    type[i] = got;
  }
  return nullptr;
}

OrtStatusPtr QleFamilyInputs::rank(size_t i, size_t r, const char* layout) const {
  if (shape[i].size() == r) return nullptr;
  return invalid(*this, std::string("input '") + op.inputs[i] + "' must have rank " + std::to_string(r) + " (" +
                            layout + "), got shape " + dims_text(shape[i]));
}

OrtStatusPtr QleFamilyInputs::expect(size_t i, const std::vector<int64_t>& want, const char* layout) const {
  if (shape[i] == want) return nullptr;
  return invalid(*this, std::string("input '") + op.inputs[i] + "' must have shape " + layout + " = " +
                            dims_text(want) + ", got " + dims_text(shape[i]));
}

OrtStatusPtr QleFamilyInputs::scalar(size_t i, float* out) const {
  const std::vector<int64_t>& s = shape[i];
  if (!(s.empty() || (s.size() == 1 && s[0] == 1)))
    return invalid(*this, std::string("input '") + op.inputs[i] + "' must be a scalar (shape [] or [1]), got " +
                              dims_text(s));
  *out = *f(i);
  return nullptr;
}

// -- PR-LSTM -----------------------------------------------------------------------------------
OrtStatusPtr qle_check_pr_matrices(const QleFamilyInputs& in, long block, int64_t D, int64_t H, int64_t R) {
  OrtStatusPtr st = nullptr;
  if ((st = size_bounds(in, {qle_size_error("the input size D", "x's last dimension, W_leaf's first", D, 1,
                                            kQleMaxWidth),
                             qle_size_error("the hidden size H", "block_h's last dimension, W_unary's second", H, 1,
                                            kQleMaxWidth),
                             qle_size_error("the number of unary refinements R", "W_unary's first dimension", R, 0,
                                            kQleMaxRefinements)})) ||
      (st = in.expect(6, {D, in.width(6, 3 * H)},
                      in.layout(6, "[D, 3H] (input-major)", "[D, ceil(3H / 2)] (input-major, int4 two per byte)"))) ||
      (st = in.expect(8, {2 * H, in.width(8, 5 * H)},
                      in.layout(8, "[2H, 5H] (input-major)", "[2H, ceil(5H / 2)] (input-major, int4 two per byte)"))) ||
      (st = in.expect(10, {R, H, in.width(10, 4 * H)},
                      in.layout(10, "[R, H, 4H] (input-major)", "[R, H, 2H] (input-major, int4 two per byte)"))))
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

OrtStatusPtr qle_check_prlstm(const QleFamilyInputs& in, long block, bool seq, QlePrDims* dims) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 3 : 2, seq ? "[B, T, D]" : "[B, D]")) || (st = in.rank(1, 3, "[B, K, H]")) ||
      (st = in.rank(10, 3, "[R, H, 4H]")))
    return st;
  const std::vector<int64_t>& xs = in.shape[0];
  const int64_t B = xs[0], T = seq ? xs[1] : 1, D = xs.back(), K = in.shape[1][1], H = in.shape[1][2];
  const int64_t R = in.shape[10][0];
  if ((st = in.expect(1, {B, K, H}, "[B, K, H] (B from x)")) || (st = in.expect(2, {B, K, H}, "[B, K, H]")) ||
      (st = in.expect(3, {B, K, H}, "[B, K, H]")) || (st = in.expect(4, {B, K, H}, "[B, K, H]")) ||
      (st = in.expect(5, {B}, "[B]")) || (st = qle_check_pr_matrices(in, block, D, H, R)) ||
      (st = in.expect(7, {3 * H}, "[3H]")) || (st = in.expect(9, {5 * H}, "[5H]")) ||
      (st = in.expect(11, {R, 4 * H}, "[R, 4H]")))
    return st;
  if (K < 1 || K > kMaxStackLevels)
    return invalid(in, "the stack depth K (block_h's second dimension) must be in [1, " +
                           std::to_string(kMaxStackLevels) + "], got " + std::to_string((long long)K));
  const int64_t* count = static_cast<const int64_t*>(in.data[5]);  // a host input
  for (int64_t r = 0; r < B; ++r)
    if (count[r] < 0 || count[r] > INT64_MAX - T)
      return invalid(in, "input 'count' must hold token counts in [0, 2^63 - 1 - T]; row " +
                             std::to_string((long long)r) + " has " + std::to_string((long long)count[r]));
  *dims = QlePrDims{B, T, D, H, K, R};
  return nullptr;
}

QlePrOutputs qle_prlstm_outputs(Ort::KernelContext& ctx, const QlePrDims& d, bool seq) {
  const std::vector<int64_t> state = {d.B, d.K, d.H};
  const int64_t count_shape[1] = {d.B};
  QlePrOutputs o{};
  o.Y = output(ctx, 0, seq ? std::vector<int64_t>{d.B, d.T, d.H} : std::vector<int64_t>{d.B, d.H});
  o.block_h = output(ctx, 1, state);
  o.block_c = output(ctx, 2, state);
  o.prefix_h = output(ctx, 3, state);
  o.prefix_c = output(ctx, 4, state);
  o.count = ctx.GetOutput(5, count_shape, 1).GetTensorMutableData<int64_t>();
  return o;
}

// -- sLSTM -------------------------------------------------------------------------------------
OrtStatusPtr qle_check_slstm_matrices(const QleFamilyInputs& in, long block, int64_t NH, int64_t DH) {
  OrtStatusPtr st = nullptr;
  if ((st = size_bounds(in, {qle_size_error("the head count NH", "R's second dimension", NH, 1, kQleMaxHeads),
                             qle_size_error("the head size DH", "R's third dimension", DH, 1, kQleMaxWidth)})) ||
      (st = size_bounds(in, {qle_size_error("the hidden size H = NH * DH", "R's second and third dimensions", NH * DH,
                                            1, kQleMaxWidth)})) ||
      (st = in.expect(5, {4, NH, DH, in.width(5, DH)},
                      in.layout(5, "[4, NH, DH, DH]", "[4, NH, DH, ceil(DH / 2)] (int4 two per byte)"))))
    return st;
  if (qle_qmode_integer(in.mode) &&
      (st = in.expect(7, scale_shape(in.mode, block, {4, NH}, DH, DH),
                      in.mode == QleQMode::I4 ? "[4, NH, ceil(DH / block_size), DH]"
                                              : "[4, NH, DH] (one scale per output channel of each slice)")))
    return st;
  return dynamic_limit(in, {{"DH", DH}});
}

OrtStatusPtr qle_check_slstm(const QleFamilyInputs& in, long block, bool seq, QleSlstmDims* dims) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 3 : 2, seq ? "[B, T, 4H]" : "[B, 4H]")) || (st = in.rank(5, 4, "[4, NH, DH, DH]")))
    return st;
  const std::vector<int64_t>& xs = in.shape[0];
  const int64_t B = xs[0], T = seq ? xs[1] : 1, NH = in.shape[5][1], DH = in.shape[5][2];
  if ((st = qle_check_slstm_matrices(in, block, NH, DH))) return st;
  const int64_t H = NH * DH;  // bounded by the check above
  if ((st = in.expect(0, seq ? std::vector<int64_t>{B, T, 4 * H} : std::vector<int64_t>{B, 4 * H},
                      seq ? "[B, T, 4H] (H = NH * DH from R)" : "[B, 4H] (H = NH * DH from R)")))
    return st;
  for (size_t i = 1; i <= 4; ++i)
    if ((st = in.expect(i, {B, H}, "[B, H]"))) return st;
  if ((st = in.expect(6, {4 * H}, "[4H]"))) return st;
  *dims = QleSlstmDims{B, T, NH, DH, H};
  return nullptr;
}

QleSlstmOutputs qle_slstm_outputs(Ort::KernelContext& ctx, const QleSlstmDims& d, bool seq) {
  const std::vector<int64_t> state = {d.B, d.H};
  QleSlstmOutputs o{};
  size_t i = 0;
  o.Y = seq ? output(ctx, i++, {d.B, d.T, d.H}) : nullptr;
  o.y = output(ctx, i++, state);
  o.c = output(ctx, i++, state);
  o.n = output(ctx, i++, state);
  o.m = output(ctx, i++, state);
  return o;
}

// -- mLSTM -------------------------------------------------------------------------------------
OrtStatusPtr qle_check_mlstm(const QleFamilyInputs& in, bool seq, QleMlstmDims* dims) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 4 : 3, seq ? "[B, T, NH, DK]" : "[B, NH, DK]")) ||
      (st = in.rank(2, seq ? 4 : 3, seq ? "[B, T, NH, DV]" : "[B, NH, DV]")))
    return st;
  const std::vector<int64_t>& qs = in.shape[0];
  const int64_t B = qs[0], T = seq ? qs[1] : 1, NH = qs[seq ? 2 : 1], DK = qs.back(), DV = in.shape[2].back();
  if ((st = size_bounds(in, {qle_size_error("the head count NH", seq ? "q's third dimension" : "q's second dimension",
                                            NH, 1, kQleMaxHeads),
                             qle_size_error("the key size DK", "q's last dimension", DK, 1, kQleMaxWidth),
                             qle_size_error("the value size DV", "v's last dimension", DV, 1, kQleMaxWidth)})))
    return st;
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
  QleMlstmDims d{B, T, NH, DK, DV, 0.0f, 0.0f, 0.0f};
  if ((st = in.scalar(8, &d.q_scale)) || (st = in.scalar(9, &d.k_scale)) || (st = in.scalar(10, &d.eps))) return st;
  *dims = d;
  return nullptr;
}

QleMlstmOutputs qle_mlstm_outputs(Ort::KernelContext& ctx, const QleMlstmDims& d, bool seq) {
  QleMlstmOutputs o{};
  o.H = output(ctx, 0, seq ? std::vector<int64_t>{d.B, d.T, d.NH, d.DV} : std::vector<int64_t>{d.B, d.NH, d.DV});
  o.C = output(ctx, 1, {d.B, d.NH, d.DK, d.DV});
  o.n = output(ctx, 2, {d.B, d.NH, d.DK});
  o.m = output(ctx, 3, {d.B, d.NH, 1});
  return o;
}

void qle_mlstm_args(const QleFamilyInputs& in, const QleMlstmDims& d, const QleMlstmOutputs& o, QleMlstmArgs* a) {
  a->B = d.B, a->T = d.T, a->NH = d.NH, a->DK = d.DK, a->DV = d.DV;
  a->q_scale = d.q_scale, a->k_scale = d.k_scale, a->eps = d.eps;
  a->q = in.f(0), a->k = in.f(1), a->v = in.f(2), a->i = in.f(3), a->f = in.f(4);
  a->C = in.f(5), a->n = in.f(6), a->m = in.f(7);
  a->Hout = o.H, a->C_out = o.C, a->n_out = o.n, a->m_out = o.m;
}
