// The op contract (qle_contract.h): input loading, the checks every op shares and their messages.
#include "qle_contract.h"

#include <initializer_list>

#include "qle_shape.h"

namespace {

std::string dims_text(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string((long long)d[i]);
  return s + "]";
}

}  // namespace

std::atomic<unsigned long long> g_qle_compute_calls{0};

const char* qle_type_name(ONNXTensorElementDataType t) {
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

std::vector<int64_t> qle_scale_shape(QleQMode mode, long block, std::vector<int64_t> lead, int64_t K, int64_t N) {
  if (mode == QleQMode::I4) lead.push_back(qle_ceil_div(K, block));
  lead.push_back(N);
  return lead;
}

bool qle_constant_matrix_sizes(const QleOpInputs& in, long block, size_t i, size_t s, size_t lead, int64_t* K,
                               int64_t* N) {
  const std::vector<int64_t>& shape = in.shape[i];
  if (shape.size() != lead + 2) return false;
  const bool packed = qle_qmatrix_packed(in.mode, in.type[i]);
  if (packed && in.shape[s].empty()) return false;
  *K = shape[lead], *N = packed ? in.shape[s].back() : shape[lead + 1];
  for (size_t l = 0; l < lead; ++l)
    if (!qle_size_ok(shape[l], 1, kQleMaxWidth)) return false;
  if (!qle_size_ok(*K, 1, kQleMaxWidth) || !qle_size_ok(*N, 1, kQleMaxWidth) || in.width(i, *N) != shape[lead + 1])
    return false;
  const std::vector<int64_t> lead_dims(shape.begin(), shape.begin() + (long)lead);
  return !qle_qmode_integer(in.mode) || (in.shape[s] == qle_scale_shape(in.mode, block, lead_dims, *K, *N) &&
                                         (in.mode != QleQMode::I8Dyn || *K <= kQleMaxDynamicK));
}

float* qle_output(Ort::KernelContext& ctx, size_t i, const std::vector<int64_t>& shape) {
  return ctx.GetOutput(i, shape.data(), shape.size()).GetTensorMutableData<float>();
}

float* qle_output(Ort::KernelContext& ctx, size_t i, std::initializer_list<int64_t> shape) {
  return ctx.GetOutput(i, shape.begin(), shape.size()).GetTensorMutableData<float>();
}

QleOpInputsStorage& qle_op_inputs_storage() {
  static thread_local QleOpInputsStorage kept;
  return kept;
}

OrtStatusPtr QleOpInputs::invalid(const std::string& msg) const {
  return qle_op_status(ORT_INVALID_ARGUMENT, op, msg);
}

OrtStatusPtr QleOpInputs::sizes(std::initializer_list<std::string> errors) const {
  for (const std::string& e : errors)
    if (!e.empty()) return invalid(e);
  return nullptr;
}

OrtStatusPtr QleOpInputs::dynamic_limit(std::initializer_list<std::pair<const char*, int64_t>> sizes) const {
  if (mode != QleQMode::I8Dyn) return nullptr;
  for (const auto& s : sizes)
    if (s.second > kQleMaxDynamicK)
      return invalid(std::string("int8-dynamic supports input sizes up to ") + std::to_string(kQleMaxDynamicK) +
                     " (exact int32 sums), got " + s.first + "=" + std::to_string((long long)s.second));
  return nullptr;
}


OrtStatusPtr qle_op_status(OrtErrorCode code, const QleOpSpec& op, const std::string& msg) {
  return Ort::GetApi().CreateStatus(code, (std::string(op.name) + ": " + msg).c_str());
}

OrtStatusPtr QleOpInputs::load(const Ort::KernelContext& ctx) {
  const size_t regular = op.regular(), got_n = ctx.GetInputCount();
  const size_t n = qle_qmode_integer(mode) ? op.inputs.size() : regular;
  if (got_n != n) {
    if (op.matrices.empty())
      return invalid("expected " + std::to_string(n) + " inputs, got " + std::to_string(got_n));
    if (qle_qmode_integer(mode)) {
      std::string scales;
      for (size_t i = regular; i < n; ++i)
        scales += std::string(i == regular ? "" : (i + 1 == n ? " and " : ", ")) + op.inputs[i];
      return invalid(std::string("quant_mode '") + qle_qmode_name(mode) + "' needs " + std::to_string(n) +
                                " inputs (the " + std::to_string(regular) + " regular ones, then " + scales +
                                "), got " + std::to_string(got_n));
    }
    return invalid("expected " + std::to_string(n) + " inputs for " + qle_qmode_name(mode) +
                              " weights, got " + std::to_string(got_n) +
                              " (scale inputs need quant_mode int8, int8-dynamic or int4)");
  }
  shape.resize(n);
  data.resize(n);
  type.resize(n);
  const OrtApi& api = Ort::GetApi();
  for (size_t i = 0; i < n; ++i) {
    Ort::ConstValue v = ctx.GetInput(i);
    // An optional input (a scale) the node leaves out with an empty name reaches the kernel as no value.
    if (v == nullptr)
      return invalid(std::string("input '") + op.inputs[i] + "' is missing (the node gives it an empty name)");
    // The element type and a reference to the input's own dims: no OrtTensorTypeAndShapeInfo allocated
    // and released per input (ORT API 24, below the ORT_API_VERSION the library registers with).
    ONNXTensorElementDataType got = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    const int64_t* dims = nullptr;
    size_t rank = 0;
    Ort::ThrowOnError(api.GetTensorElementTypeAndShapeDataReference(v, &got, &dims, &rank));
    if (!op.accepts(mode, i, got)) {
      std::string why;
      if (op.mode_typed(i))
        why = mode == QleQMode::F32 ? " (the node has no quant_mode attribute, so its weights are float32)"
                                    : std::string(" for quant_mode '") + qle_qmode_name(mode) + "'";
      const char* want = op.is_matrix(i) ? qle_qmode_weight_types(mode) : qle_type_name(op.type(mode, i));
      return invalid(std::string("input '") + op.inputs[i] + "' must be " + want + why + ", got " +
                                qle_type_name(got));
    }
    shape[i].assign(dims, dims + rank);
    data[i] = v.GetTensorRawData();
    type[i] = got;
  }
  return nullptr;
}

OrtStatusPtr QleOpInputs::rank_error(size_t i, size_t r, const char* layout) const {
  return invalid(std::string("input '") + op.inputs[i] + "' must have rank " + std::to_string(r) + " (" +
                            layout + "), got shape " + dims_text(shape[i]));
}

OrtStatusPtr QleOpInputs::expect_error(size_t i, const int64_t* want, size_t n, const char* layout) const {
  return invalid(std::string("input '") + op.inputs[i] + "' must have shape " + layout + " = " +
                            dims_text(std::vector<int64_t>(want, want + n)) + ", got " + dims_text(shape[i]));
}

OrtStatusPtr QleOpInputs::scalar(size_t i, float* out) const {
  const std::vector<int64_t>& s = shape[i];
  if (!(s.empty() || (s.size() == 1 && s[0] == 1)))
    return invalid(std::string("input '") + op.inputs[i] + "' must be a scalar (shape [] or [1]), got " +
                              dims_text(s));
  *out = *f(i);
  return nullptr;
}
