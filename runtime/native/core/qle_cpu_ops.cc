// What the CPU op registrations share (qle_cpu_ops.h).
#include "qle_cpu_ops.h"

#include <stdlib.h>

#include <string>

namespace {

constexpr const char* kIsaEnv = "QLSTM_EDGE_NATIVE_ISA";

}  // namespace

OrtStatusPtr qle_op_cpu_kernels(const QleOpSpec& op, const QleCpuKernels** k) {
  const char* isa = getenv(kIsaEnv);
  const char* err = nullptr;
  *k = qle_select_isa(isa, &err);
  if (*k != nullptr) return nullptr;
  return qle_op_status(ORT_INVALID_ARGUMENT, op, std::string(kIsaEnv) + "=" + isa + ": " + err);
}

bool qle_constant_weights(const OrtKernelInfo* info, const QleOpSpec& op, QleQMode mode, QleOpInputs* in) {
  Ort::ConstKernelInfo ki(info);
  const size_t n = qle_qmode_integer(mode) ? op.inputs.size() : op.regular();
  if (ki.GetInputCount() != n) return false;
  in->shape.assign(n, {});
  in->data.assign(n, nullptr);
  in->type.assign(n, ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED);
  std::vector<size_t> idx = op.matrices;
  for (size_t i = op.regular(); i < n; ++i) idx.push_back(i);
  for (size_t i : idx) {
    int is_const = 0;
    Ort::ConstValue v = ki.GetTensorConstantInput(i, &is_const);
    if (!is_const || v == nullptr) return false;
    Ort::TensorTypeAndShapeInfo t = v.GetTensorTypeAndShapeInfo();
    if (!op.accepts(mode, i, t.GetElementType())) return false;
    in->shape[i] = t.GetShape();
    in->data[i] = v.GetTensorRawData();
    in->type[i] = t.GetElementType();
  }
  return true;
}

bool qle_check_passed(OrtStatusPtr st) {
  if (st == nullptr) return true;
  Ort::GetApi().ReleaseStatus(st);
  return false;
}

OrtStatusPtr qle_read_attributes(const OrtApi& api, const OrtKernelInfo* info, const QleOpSpec& op,
                                 std::vector<float>* values, std::vector<int>* choices) {
  values->assign(op.attributes.size(), 0.0f);
  for (size_t i = 0; i < op.attributes.size(); ++i)
    if (OrtStatusPtr st = api.KernelInfoGetAttribute_float(info, op.attributes[i], &(*values)[i])) {
      api.ReleaseStatus(st);
      return qle_op_status(ORT_INVALID_ARGUMENT, op,
                           std::string("the node has no float attribute '") + op.attributes[i] + "'");
    }
  choices->assign(op.choices.size(), 0);
  for (size_t i = 0; i < op.choices.size(); ++i) {
    const QleChoice& c = op.choices[i];
    std::string value;
    OrtStatusPtr st = nullptr;
    if (!qle_read_string(api, info, op.name, c.name, &value, &st)) {
      if (st) return st;
      continue;  // absent: the first value
    }
    size_t j = 0;
    while (j < c.values.size() && value != c.values[j]) ++j;
    if (j == c.values.size()) {
      std::string known;
      for (size_t k = 0; k < c.values.size(); ++k) known += std::string(k ? ", " : "") + "'" + c.values[k] + "'";
      return qle_op_status(ORT_INVALID_ARGUMENT, op,
                           std::string("attribute '") + c.name + "' must be one of " + known + ", got '" + value + "'");
    }
    (*choices)[i] = (int)j;
  }
  return nullptr;
}
