// The contract of the PR-LSTM and xLSTM custom ops (signatures in qle_family_ops.h), shared by their
// CPU (qle_family_ops.cc) and CUDA (qle_family_cuda_ops.cc) registrations: each op's inputs, element
// types and appended scales; the checks of a node's inputs, with the error messages both report; the
// sizes those checks resolve and the outputs of those sizes; and what both registrations do alike
// (the signature, a Compute call's start). Plain C++ over onnxruntime's API, no CUDA types: the
// checks read shapes, plus the values of the inputs every execution provider takes in host memory
// (`host`).
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "qle_ort_status.h"
#include "qle_mlstm_args.h"
#include "qle_qmatrix.h"

enum class QleFamilyKind { PrStep, PrSeq, SCell, SSeq, MCell, MSeq };
constexpr QleFamilyKind kQleFamilyKinds[] = {QleFamilyKind::PrStep, QleFamilyKind::PrSeq, QleFamilyKind::SCell,
                                             QleFamilyKind::SSeq,   QleFamilyKind::MCell, QleFamilyKind::MSeq};

struct QleFamilyOpSpec {
  QleFamilyKind kind;
  const char* name;
  std::vector<const char*> inputs;                     // regular inputs, then the appended scales
  std::vector<ONNXTensorElementDataType> input_types;  // of the regular inputs in an fp32 node
  std::vector<ONNXTensorElementDataType> output_types;
  std::vector<size_t> matrices;  // the matrix inputs; a quantized node appends their scales in order
  bool x_in_product;             // input 0 enters a matrix product (float16 in an fp16 node)
  std::vector<size_t> host;      // inputs whose values the checks read: count, the mLSTM scalars (the
                                 // CUDA ops take them in host memory; on the CPU every input is there)

  size_t regular() const { return input_types.size(); }
  bool is_matrix(size_t i) const { return std::find(matrices.begin(), matrices.end(), i) != matrices.end(); }
  bool on_host(size_t i) const { return std::find(host.begin(), host.end(), i) != host.end(); }
  // The inputs whose element type depends on the mode.
  bool mode_typed(size_t i) const { return is_matrix(i) || (i == 0 && x_in_product); }
  // Element type of input i, not a matrix, in a node of mode m.
  ONNXTensorElementDataType type(QleQMode m, size_t i) const;
  // Whether input i of a node of mode m may have element type t (a matrix: qle_qmode_accepts).
  bool accepts(QleQMode m, size_t i, ONNXTensorElementDataType t) const;
};

const QleFamilyOpSpec& qle_family_spec(QleFamilyKind kind);

// A status "<op>: <msg>".
OrtStatusPtr qle_family_status(OrtErrorCode code, const QleFamilyOpSpec& op, const std::string& msg);

// A node's inputs, checked against the op's contract with messages naming the op and tensor.
struct QleFamilyInputs {
  const QleFamilyOpSpec& op;
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

  OrtStatusPtr rank(size_t i, size_t r, const char* layout) const;
  OrtStatusPtr expect(size_t i, const std::vector<int64_t>& want, const char* layout) const;
  // A 0-d scalar or a one-element vector (a host input).
  OrtStatusPtr scalar(size_t i, float* out) const;
};

// One Compute call of a node of `kind` and `mode`: counts it in *calls, loads its inputs (load's
// checks), then returns run(ctx, inputs). A C++ exception becomes a status naming the op.
template <typename Run>
OrtStatusPtr qle_family_compute(OrtKernelContext* context, QleFamilyKind kind, QleQMode mode,
                                std::atomic<unsigned long long>* calls, Run&& run) {
  const QleFamilyOpSpec& op = qle_family_spec(kind);
  return qle_guarded(op.name, [&]() -> OrtStatusPtr {
    calls->fetch_add(1, std::memory_order_relaxed);
    Ort::KernelContext ctx(context);
    QleFamilyInputs in{op, mode, {}, {}, {}};
    if (OrtStatusPtr st = in.load(ctx)) return st;
    return run(ctx, in);
  });
}

// Sizes of a checked node. The step / cell ops have T = 1.
struct QlePrDims {
  int64_t B, T, D, H, K, R;
};
struct QleSlstmDims {
  int64_t B, T, NH, DH, H;  // H = NH * DH
};
struct QleMlstmDims {
  int64_t B, T, NH, DK, DV;
  float q_scale, k_scale, eps;  // the scalar inputs' values
};

// PR-LSTM: D and H in [1, 2^24] and R in [0, 1024] (qle_shape.h), W_leaf [D, 3H], W_merge [2H, 5H],
// W_unary [R, H, 4H] (int4 packed: the last dimension halved, rounded up) and, in the integer modes, their
// scales (exporters/quantize.py); int8-dynamic also bounds D and 2H. Needs only those inputs loaded.
OrtStatusPtr qle_check_pr_matrices(const QleFamilyInputs& in, long block, int64_t D, int64_t H, int64_t R);
// PRLSTMStep (seq false) / PRLSTMSequence: every input's shape, the stack depth K in [1, 62] and
// count (host) in [0, 2^63 - 1 - T].
OrtStatusPtr qle_check_prlstm(const QleFamilyInputs& in, long block, bool seq, QlePrDims* dims);

// sLSTM: NH in [1, 4096], DH and H = NH * DH in [1, 2^24] (qle_shape.h), R [4, NH, DH, DH] (int4 packed:
// [4, NH, DH, ceil(DH / 2)]) and, in the integer modes, R_scale; int8-dynamic also bounds DH. Needs only
// those inputs loaded.
OrtStatusPtr qle_check_slstm_matrices(const QleFamilyInputs& in, long block, int64_t NH, int64_t DH);
// sLSTMCell (seq false) / sLSTMSequence: every input's shape.
OrtStatusPtr qle_check_slstm(const QleFamilyInputs& in, long block, bool seq, QleSlstmDims* dims);

// mLSTMCell (seq false) / mLSTMSequence: NH in [1, 4096], DK and DV in [1, 2^24] (qle_shape.h), every
// input's shape and the scalars' values (host).
OrtStatusPtr qle_check_mlstm(const QleFamilyInputs& in, bool seq, QleMlstmDims* dims);

// The outputs of a checked node (onnxruntime allocates them in the execution provider's memory):
//   PR-LSTM  Y [B, T, H] (step: [B, H]), block_h', block_c', prefix_h', prefix_c' [B, K, H], count' [B]
//   sLSTM    Y [B, T, H] (sequence only; null for the cell), y', c', n', m' [B, H]
//   mLSTM    H [B, T, NH, DV] (cell: [B, NH, DV]), C' [B, NH, DK, DV], n' [B, NH, DK], m' [B, NH, 1]
struct QlePrOutputs {
  float* Y;
  float *block_h, *block_c, *prefix_h, *prefix_c;
  int64_t* count;
};
struct QleSlstmOutputs {
  float *Y, *y, *c, *n, *m;
};
struct QleMlstmOutputs {
  float *H, *C, *n, *m;
};
QlePrOutputs qle_prlstm_outputs(Ort::KernelContext& ctx, const QlePrDims& d, bool seq);
QleSlstmOutputs qle_slstm_outputs(Ort::KernelContext& ctx, const QleSlstmDims& d, bool seq);
QleMlstmOutputs qle_mlstm_outputs(Ort::KernelContext& ctx, const QleMlstmDims& d, bool seq);

// The mLSTM kernels' arguments (the same struct on CPU and CUDA: the ops hold no weights).
void qle_mlstm_args(const QleFamilyInputs& in, const QleMlstmDims& d, const QleMlstmOutputs& o, QleMlstmArgs* a);

// The signature half of an op's registration (Ort::CustomOpBase reads these); TOp adds the
// execution provider, memory types and kernel creation. x and the matrix inputs take whatever
// element type the node's mode gives them (checked by QleFamilyInputs::load); the appended scale
// inputs are optional (present in the integer modes).
template <typename TOp, typename TKernel>
struct QleFamilyOpBase : Ort::CustomOpBase<TOp, TKernel, true> {
  explicit QleFamilyOpBase(QleFamilyKind k) : kind(k) {}
  const QleFamilyOpSpec& spec() const { return qle_family_spec(kind); }
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
  QleFamilyKind kind;
};

// Appends one static TOp per kind (valid for the life of the process).
template <typename TOp>
void qle_family_append_ops(std::vector<const OrtCustomOp*>* out) {
  static const TOp ops[] = {TOp(QleFamilyKind::PrStep), TOp(QleFamilyKind::PrSeq), TOp(QleFamilyKind::SCell),
                            TOp(QleFamilyKind::SSeq),   TOp(QleFamilyKind::MCell), TOp(QleFamilyKind::MSeq)};
  for (const TOp& op : ops) out->push_back(&op);
}
