// The op contract shared by every custom op of the library, on the CPU and CUDA registrations alike:
// each op's spec (inputs, element types, appended scales, matrices, host inputs), the loading and
// checking of a node's inputs with the error messages every registration reports, and what all
// registrations do alike (the signature, a Compute call's start). Each family's ops file adds its
// shape checks (qle_check_<op>) over QleOpInputs. Plain C++ over onnxruntime's API, no CUDA types:
// the checks read shapes, plus the values of the inputs every execution provider takes in host memory
// (`host`).
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <atomic>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "qle_ort_status.h"
#include "qle_qmatrix.h"

// A string attribute of an op and its values; a node without it takes values[0] (so a node written before
// the attribute existed keeps its meaning).
struct QleChoice {
  const char* name;
  std::vector<const char*> values;
};

// One custom op's contract. Each family's ops file defines its ops' specs; the library's
// qle_native_info lists them (its "contract" key), so the Python op table can be checked against them.
struct QleOpSpec {
  const char* name;
  bool sequence;                                       // the op runs T steps (else one: a cell / step op)
  std::vector<const char*> inputs;                     // regular inputs, then the appended scales
  std::vector<ONNXTensorElementDataType> input_types;  // of the regular inputs in an fp32 node
  std::vector<ONNXTensorElementDataType> output_types;
  std::vector<size_t> matrices;  // the matrix inputs; a quantized node appends their scales in order
  bool x_in_product;             // input 0 enters a matrix product (float16 in an fp16 node)
  std::vector<size_t> host;      // inputs whose values the checks read: count, the mLSTM scalars (the
                                 // CUDA ops take them in host memory; on the CPU every input is there)
  std::vector<const char*> attributes = {};  // float attributes every node has (read when its kernel is made)
  std::vector<QleChoice> choices = {};       // string attributes (read then too, as indices into their values)

  size_t regular() const { return input_types.size(); }
  bool is_matrix(size_t i) const { return std::find(matrices.begin(), matrices.end(), i) != matrices.end(); }
  bool on_host(size_t i) const { return std::find(host.begin(), host.end(), i) != host.end(); }
  // The inputs whose element type depends on the mode.
  bool mode_typed(size_t i) const { return is_matrix(i) || (i == 0 && x_in_product); }
  // Element type of input i, not a matrix, in a node of mode m.
  // (Both inline: QleOpInputs::load asks them for every input of every Compute call.)
  ONNXTensorElementDataType type(QleQMode m, size_t i) const {
    if (i >= regular()) return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    if (i == 0 && x_in_product && m == QleQMode::F16) return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    return input_types[i];
  }
  // Whether input i of a node of mode m may have element type t (a matrix: qle_qmode_accepts).
  bool accepts(QleQMode m, size_t i, ONNXTensorElementDataType t) const {
    return i < regular() && is_matrix(i) ? qle_qmode_accepts(m, t) : t == type(m, i);
  }
};

constexpr ONNXTensorElementDataType kQleF32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr ONNXTensorElementDataType kQleI64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;

// The ONNX name of an element type ("float32", "int64", ...).
const char* qle_type_name(ONNXTensorElementDataType t);

// Compute calls of every op in this process (lets tests and the runtime observe that the native
// kernel, not the function body, ran).
extern std::atomic<unsigned long long> g_qle_compute_calls;

// A status "<op>: <msg>".
OrtStatusPtr qle_op_status(OrtErrorCode code, const QleOpSpec& op, const std::string& msg);

// A node's inputs, checked against the op's contract with messages naming the op and tensor.
struct QleOpInputs {
  const QleOpSpec& op;
  QleQMode mode;
  std::vector<std::vector<int64_t>> shape;
  std::vector<const void*> data;
  std::vector<ONNXTensorElementDataType> type;

  // The input count (regular inputs, plus the scales in the integer modes) and element types.
  OrtStatusPtr load(const Ort::KernelContext& ctx);

  const float* f(size_t i) const { return static_cast<const float*>(data[i]); }
  // A scale input of the integer modes (null otherwise).
  const float* scale(size_t i) const { return qle_qmode_integer(mode) ? f(i) : nullptr; }
  // Last dimension of matrix input i holding N columns (qle_qmatrix_width).
  int64_t width(size_t i, int64_t N) const { return qle_qmatrix_width(mode, type[i], N); }
  // Layout text of matrix input i: `plain`, or `packed` for int4 packed two per byte.
  const char* layout(size_t i, const char* plain, const char* packed) const {
    return qle_qmatrix_packed(mode, type[i]) ? packed : plain;
  }

  // An ORT_INVALID_ARGUMENT status "<op>: <msg>".
  OrtStatusPtr invalid(const std::string& msg) const;
  // The first failed size bound (qle_size_error texts, empty when met), or null.
  OrtStatusPtr sizes(std::initializer_list<std::string> errors) const;
  // int8-dynamic: the products' input sizes (name, value) must keep the int32 sums exact.
  OrtStatusPtr dynamic_limit(std::initializer_list<std::pair<const char*, int64_t>> sizes) const;
  // rank and expect compare inline (every Compute call checks every input) and build their messages
  // out of line, only on a mismatch.
  OrtStatusPtr rank(size_t i, size_t r, const char* layout) const {
    return shape[i].size() == r ? nullptr : rank_error(i, r, layout);
  }
  OrtStatusPtr expect(size_t i, const std::vector<int64_t>& want, const char* layout) const {
    return shape[i] == want ? nullptr : expect_error(i, want.data(), want.size(), layout);
  }
  // The same for a shape written out ({B, H}): compared in place, no vector built.
  OrtStatusPtr expect(size_t i, std::initializer_list<int64_t> want, const char* layout) const {
    const std::vector<int64_t>& s = shape[i];
    if (s.size() == want.size() && std::equal(want.begin(), want.end(), s.begin())) return nullptr;
    return expect_error(i, want.begin(), want.size(), layout);
  }
  OrtStatusPtr rank_error(size_t i, size_t r, const char* layout) const;
  OrtStatusPtr expect_error(size_t i, const int64_t* want, size_t n, const char* layout) const;
  // A 0-d scalar or a one-element vector (a host input).
  OrtStatusPtr scalar(size_t i, float* out) const;
};

// Scale shape of stacked matrices lead + [K, N] (exporters/quantize.py): int8 and int8-dynamic
// lead + [N], int4 lead + [ceil(K / block), N].
std::vector<int64_t> qle_scale_shape(QleQMode mode, long block, std::vector<int64_t> lead, int64_t K, int64_t N);
// [K, N] of matrix input i (scale input s) with `lead` leading dimensions, read from its shape (int4
// packed: N from its scale), when it and its scale are well formed: what a kernel packs constant matrices
// by before its first call (the node's other inputs are checked against them on every call).
bool qle_constant_matrix_sizes(const QleOpInputs& in, long block, size_t i, size_t s, size_t lead, int64_t* K,
                               int64_t* N);
// Output i of shape `shape` (float32), allocated by onnxruntime in the execution provider's memory.
float* qle_output(Ort::KernelContext& ctx, size_t i, const std::vector<int64_t>& shape);
// The same for a shape written out ({B, H}): no vector built.
float* qle_output(Ort::KernelContext& ctx, size_t i, std::initializer_list<int64_t> shape);

// One Compute call of a node of op `op` and `mode`: counts it, loads its inputs (load's checks), then
// returns run(ctx, inputs). A C++ exception becomes a status naming the op.
// The vectors of a QleOpInputs, kept per thread between Compute calls so that a warm call allocates
// none of them (load refills them in place).
struct QleOpInputsStorage {
  std::vector<std::vector<int64_t>> shape;
  std::vector<const void*> data;
  std::vector<ONNXTensorElementDataType> type;
};
QleOpInputsStorage& qle_op_inputs_storage();

template <typename Run>
OrtStatusPtr qle_op_compute(OrtKernelContext* context, const QleOpSpec& op, QleQMode mode, Run&& run) {
  return qle_guarded(op.name, [&]() -> OrtStatusPtr {
    g_qle_compute_calls.fetch_add(1, std::memory_order_relaxed);
    Ort::KernelContext ctx(context);
    QleOpInputsStorage& kept = qle_op_inputs_storage();
    QleOpInputs in{op, mode, std::move(kept.shape), std::move(kept.data), std::move(kept.type)};
    OrtStatusPtr st = in.load(ctx);
    if (st == nullptr) st = run(ctx, in);
    kept.shape = std::move(in.shape), kept.data = std::move(in.data), kept.type = std::move(in.type);
    return st;
  });
}

// The signature half of an op's registration (Ort::CustomOpBase reads these); TOp adds the
// execution provider, memory types and kernel creation. x and the matrix inputs take whatever
// element type the node's mode gives them (checked by QleOpInputs::load); the appended scale
// inputs are optional (present in the integer modes).
template <typename TOp, typename TKernel>
struct QleOpSchema : Ort::CustomOpBase<TOp, TKernel, true> {
  explicit QleOpSchema(const QleOpSpec& s) : op_spec(&s) {}
  const QleOpSpec& spec() const { return *op_spec; }
  const char* GetName() const { return spec().name; }
  size_t GetInputTypeCount() const { return spec().inputs.size(); }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return spec().mode_typed(i) ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED : spec().type(QleQMode::F32, i);
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return i < spec().regular() ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
  }
  size_t GetOutputTypeCount() const { return spec().output_types.size(); }
  ONNXTensorElementDataType GetOutputType(size_t i) const { return spec().output_types[i]; }
  const QleOpSpec* op_spec;
};
