// onnxruntime custom-op registration for the qlstm_edge domain (op-set version 1):
//   QLLSTMCell(x, h, c, W_x, W_h, bias, gate_scale, gate_bias, alpha [, W_x_scale, W_h_scale])
//       -> (h_new, c_new)
//   QLLSTMSequence(x, h0, c0, W_x, W_h, bias, gate_scale, gate_bias, alpha [, W_x_scale, W_h_scale])
//       -> (Y, h_T, c_T)
// Quantized weights follow exporters/quantize.py (custom-op contract version 1): the node's
// quant_mode / block_size attributes and the element types of x, W_x, W_h select the mode:
//   (no attribute)  fp32     every input float32, 9 inputs
//   "fp16"          x, W_x, W_h float16; products rounded to float16 like the function body
//   "int8"          W int8 [K, N], scales float32 [N] appended (inputs 9, 10)
//   "int8-dynamic"  as int8, activations quantized per row on the fly, exact int32 products
//   "int4"          W uint8 [K, ceil(N / 2)] (int4 packed two per byte) or ONNX INT4 [K, N] (files
//                   exported before the packed form), scales float32 [ceil(K / block_size), N] appended
// CPU kernels always; CUDA kernels when built with QLE_WITH_CUDA.
// The same domain also holds the PR-LSTM and xLSTM ops (qle_family_ops.cc; CPU kernels, every mode;
// with QLE_WITH_CUDA also CUDA kernels, qle_family_cuda_ops.cc).
// Weight packing and the mode-dispatched product are shared with them (qle_qmatrix.h).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <atomic>
#include <memory>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <vector>

#include "qle_cpu.h"
#include "qle_prlstm_ops.h"
#include "qle_ort_status.h"
#include "qle_qmatrix.h"
#include "qle_shape.h"
#if defined(QLE_WITH_CUDA)
#include "qle_qllstm_cuda.h"
#include "qle_prlstm_cuda.h"
#endif

#define QLE_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr const char* kDomain = "qlstm_edge";
constexpr const char* kIsaEnv = "QLSTM_EDGE_NATIVE_ISA";
constexpr size_t kRegularInputs = 9;
constexpr size_t kMaxInputs = 11;
constexpr const char* kInputNames[kMaxInputs] = {
    "x", "h", "c", "W_x", "W_h", "bias", "gate_scale", "gate_bias", "alpha", "W_x_scale",
    "W_h_scale"};
std::atomic<unsigned long long> g_compute_calls{0};

using Mode = QleQMode;

const char* mode_name(Mode m) { return qle_qmode_name(m); }
bool quantized_integer(Mode m) { return qle_qmode_integer(m); }

const char* type_name(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT4: return "int4";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    default: return "another element type";
  }
}

bool is_matrix(size_t i) { return i == 3 || i == 4; }

// Element type the contract gives input i, not a matrix, in mode m.
ONNXTensorElementDataType expected_type(Mode m, size_t i) {
  if (i == 0) return m == Mode::F16 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

// Whether input i may have element type t in mode m.
bool type_ok(Mode m, size_t i, ONNXTensorElementDataType t) {
  return is_matrix(i) ? qle_qmode_accepts(m, t) : t == expected_type(m, i);
}

struct Dims {
  size_t rank = 0;
  int64_t d[4] = {0, 0, 0, 0};
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
};

struct Problem {
  long B = 0, T = 1, D = 0, H = 0;
  ONNXTensorElementDataType wx_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  ONNXTensorElementDataType wh_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  const void* in[kMaxInputs] = {};
  const float* f(size_t i) const { return static_cast<const float*>(in[i]); }
};

OrtStatusPtr make_status(OrtErrorCode code, const char* msg) {
  return Ort::GetApi().CreateStatus(code, msg);
}

void format_dims(const Dims& s, char* buf, size_t n) {
  size_t used = (size_t)snprintf(buf, n, "[");
  for (size_t i = 0; i < s.rank && used < n; ++i)
    used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)s.d[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

// Reads the shape of input i; fails for an element type the mode does not give it and for ranks
// above 3.
OrtStatusPtr input_dims(const Ort::KernelContext& ctx, const char* op, Mode mode, size_t i,
                        Dims* out) {
  Ort::ConstValue v = ctx.GetInput(i);
  Ort::TensorTypeAndShapeInfo info = v.GetTensorTypeAndShapeInfo();
  char msg[400];
  const ONNXTensorElementDataType got = info.GetElementType();
  if (!type_ok(mode, i, got)) {
    if (mode == Mode::F32)
      snprintf(msg, sizeof msg,
               "%s: input '%s' must be float32 (the node has no quant_mode attribute, so its "
               "weights are float32), got %s",
               op, kInputNames[i], type_name(got));
    else
      snprintf(msg, sizeof msg, "%s: input '%s' must be %s for quant_mode '%s', got %s", op,
               kInputNames[i],
               is_matrix(i) ? qle_qmode_weight_types(mode) : type_name(expected_type(mode, i)),
               mode_name(mode), type_name(got));
    return make_status(ORT_INVALID_ARGUMENT, msg);
  }
  out->type = got;
  out->rank = info.GetDimensionsCount();
  if (out->rank > 3) {
    snprintf(msg, sizeof msg, "%s: input '%s' has rank %zu, expected at most 3", op,
             kInputNames[i], out->rank);
    return make_status(ORT_INVALID_ARGUMENT, msg);
  }
  Ort::ThrowOnError(Ort::GetApi().GetDimensions(info, out->d, out->rank));
  return nullptr;
}

OrtStatusPtr expect_shape(const char* op, size_t i, const Dims& got, size_t rank,
                          const int64_t* want, const char* want_text) {
  bool ok = got.rank == rank;
  for (size_t k = 0; ok && k < rank; ++k) ok = got.d[k] == want[k];
  if (ok) return nullptr;
  char g[96], w[96], msg[400];
  format_dims(got, g, sizeof g);
  Dims wd;
  wd.rank = rank;
  for (size_t k = 0; k < rank; ++k) wd.d[k] = want[k];
  format_dims(wd, w, sizeof w);
  snprintf(msg, sizeof msg, "%s: input '%s' must have shape %s = %s, got %s", op,
           kInputNames[i], want_text, w, g);
  return make_status(ORT_INVALID_ARGUMENT, msg);
}

// Layout text of matrix input s: `plain`, or `packed` for int4 packed two per byte.
const char* layout(Mode m, const Dims& s, const char* plain, const char* packed) {
  return qle_qmatrix_packed(m, s.type) ? packed : plain;
}

// Checks the inputs against the op contract for `mode` (D and H in [1, 2^24], qle_shape.h) and fills
// *p (B, T, D, H, data pointers).
OrtStatusPtr validate(const Ort::KernelContext& ctx, bool sequence, Mode mode, long block,
                      Problem* p) {
  const char* op = sequence ? "QLLSTMSequence" : "QLLSTMCell";
  char msg[400];
  const size_t want_inputs = quantized_integer(mode) ? kMaxInputs : kRegularInputs;
  if (ctx.GetInputCount() != want_inputs) {
    if (quantized_integer(mode))
      snprintf(msg, sizeof msg,
               "%s: quant_mode '%s' needs 11 inputs (the 9 regular ones, then W_x_scale and "
               "W_h_scale), got %zu",
               op, mode_name(mode), ctx.GetInputCount());
    else
      snprintf(msg, sizeof msg,
               "%s: expected 9 inputs for %s weights, got %zu (scale inputs need quant_mode "
               "int8, int8-dynamic or int4)",
               op, mode_name(mode), ctx.GetInputCount());
    return make_status(ORT_INVALID_ARGUMENT, msg);
  }
  Dims s[kMaxInputs];
  for (size_t i = 0; i < want_inputs; ++i)
    if (OrtStatusPtr st = input_dims(ctx, op, mode, i, &s[i])) return st;
  const size_t xr = sequence ? 3 : 2;
  if (s[0].rank != xr) {
    snprintf(msg, sizeof msg, "%s: input 'x' must have rank %zu (%s), got rank %zu", op, xr,
             sequence ? "[B, T, D]" : "[B, D]", s[0].rank);
    return make_status(ORT_INVALID_ARGUMENT, msg);
  }
  if (s[1].rank != 2) {
    snprintf(msg, sizeof msg, "%s: input 'h' must have rank 2 ([B, H]), got rank %zu", op,
             s[1].rank);
    return make_status(ORT_INVALID_ARGUMENT, msg);
  }
  const int64_t B = s[0].d[0], T = sequence ? s[0].d[1] : 1, D = s[0].d[xr - 1];
  const int64_t H = s[1].d[1];
  for (const std::string& e : {qle_size_error("the input size D", "x's last dimension", D, 1, kQleMaxWidth),
                               qle_size_error("the hidden size H", "h's second dimension", H, 1, kQleMaxWidth)})
    if (!e.empty()) {
      snprintf(msg, sizeof msg, "%s: %s", op, e.c_str());
      return make_status(ORT_INVALID_ARGUMENT, msg);
    }
  const int64_t bh[2] = {B, H}, h1[1] = {H}, fh[2] = {4, H};
  const int64_t dh[2] = {D, qle_qmatrix_width(mode, s[3].type, H)};
  const int64_t hh[2] = {H, qle_qmatrix_width(mode, s[4].type, H)};
  OrtStatusPtr st = nullptr;
  if ((st = expect_shape(op, 1, s[1], 2, bh, "[B, H] (B from x)")) ||
      (st = expect_shape(op, 2, s[2], 2, bh, "[B, H]")) ||
      (st = expect_shape(op, 3, s[3], 2, dh,
                         layout(mode, s[3], "[D, H] (input-major)",
                                "[D, ceil(H / 2)] (input-major, int4 two per byte)"))) ||
      (st = expect_shape(op, 4, s[4], 2, hh,
                         layout(mode, s[4], "[H, H] (input-major)",
                                "[H, ceil(H / 2)] (input-major, int4 two per byte)"))) ||
      (st = expect_shape(op, 5, s[5], 1, h1, "[H]")) ||
      (st = expect_shape(op, 6, s[6], 2, fh, "[4, H]")) ||
      (st = expect_shape(op, 7, s[7], 2, fh, "[4, H]")) ||
      (st = expect_shape(op, 8, s[8], 0, nullptr, "[] (0-d scalar)")))
    return st;
  if (mode == Mode::I8 || mode == Mode::I8Dyn) {
    if ((st = expect_shape(op, 9, s[9], 1, h1, "[H] (one scale per output channel)")) ||
        (st = expect_shape(op, 10, s[10], 1, h1, "[H] (one scale per output channel)")))
      return st;
  } else if (mode == Mode::I4) {
    const int64_t xs[2] = {qle_ceil_div(D, block), H}, hs[2] = {qle_ceil_div(H, block), H};
    if ((st = expect_shape(op, 9, s[9], 2, xs, "[ceil(D / block_size), H]")) ||
        (st = expect_shape(op, 10, s[10], 2, hs, "[ceil(H / block_size), H]")))
      return st;
  }
  if (mode == Mode::I8Dyn && (D > kQleMaxDynamicK || H > kQleMaxDynamicK)) {
    snprintf(msg, sizeof msg,
             "%s: int8-dynamic supports input sizes up to %ld (exact int32 sums), got D=%lld, "
             "H=%lld",
             op, kQleMaxDynamicK, (long long)D, (long long)H);
    return make_status(ORT_INVALID_ARGUMENT, msg);
  }
  p->B = (long)B;
  p->T = (long)T;
  p->D = (long)D;
  p->H = (long)H;
  p->wx_type = s[3].type;
  p->wh_type = s[4].type;
  for (size_t i = 0; i < want_inputs; ++i) p->in[i] = ctx.GetInput(i).GetTensorRawData();
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// CPU: weight matrices as the kernels read them

struct Weights {
  QleQMatrix wx, wh;
};

const char* pack_weights(Mode mode, long block, const void* W_x, ONNXTensorElementDataType tx,
                         const void* W_h, ONNXTensorElementDataType th, const float* sx,
                         const float* sh, long D, long H, Weights* w) {
  if (const char* e = qle_qmatrix_pack(mode, block, W_x, tx, 0, sx, D, H, &w->wx)) return e;
  return qle_qmatrix_pack(mode, block, W_h, th, 0, sh, H, H, &w->wh);
}

// ---------------------------------------------------------------------------------------------
// CPU kernels

constexpr long kRowGroup = 4;     // batch rows that share one pass over the weights
constexpr long kProjChunk = 64;   // rows of the sequence input projection per task
constexpr long kParallelMacs = 1L << 17;

struct Args {
  const QleCpuKernels* k;
  const Weights* w;
  long B, T, D, H;
  const float *x, *h, *c, *bias, *gs, *gb;  // x as float32 (fp16 x converted by the caller)
  float alpha;
  float *Y, *h_out, *c_out;                 // Y: sequence only
};

void cell_rows(const Args& a, long r0, long r1) {
  const long m = r1 - r0, H = a.H;
  float* u = a.h_out + r0 * H;
  qle_qmatmul(a.k, a.w->wx, m, a.x + r0 * a.D, a.D, a.bias, 0, u, H);
  qle_qmatmul(a.k, a.w->wh, m, a.h + r0 * H, H, u, H, u, H);
  for (long r = r0; r < r1; ++r)
    a.k->gates(H, a.h_out + r * H, a.h + r * H, a.c + r * H, a.gs, a.gb, a.alpha,
               a.h_out + r * H, a.c_out + r * H);
}

void cell_task(void* p, size_t g) {
  const Args& a = *static_cast<const Args*>(p);
  const long r0 = (long)g * kRowGroup;
  cell_rows(a, r0, r0 + kRowGroup < a.B ? r0 + kRowGroup : a.B);
}

void seq_project_task(void* p, size_t chunk) {
  const Args& a = *static_cast<const Args*>(p);
  const long M = a.B * a.T, r0 = (long)chunk * kProjChunk;
  const long m = M - r0 < kProjChunk ? M - r0 : kProjChunk;
  qle_qmatmul(a.k, a.w->wx, m, a.x + r0 * a.D, a.D, a.bias, 0, a.Y + r0 * a.H, a.H);
}

// Recurrence for batch rows [b0, b0 + m): Y[:, t] holds x_t @ W_x + bias and is overwritten
// with h_t; c_out carries c between steps.
void seq_recur_task(void* p, size_t g) {
  const Args& a = *static_cast<const Args*>(p);
  const long b0 = (long)g * kRowGroup;
  const long m = a.B - b0 < kRowGroup ? a.B - b0 : kRowGroup;
  const long H = a.H, ldy = a.T * H;
  float* y0 = a.Y + b0 * ldy;
  float* c = a.c_out + b0 * H;
  for (long t = 0; t < a.T; ++t) {
    const float* hp = t == 0 ? a.h + b0 * H : y0 + (t - 1) * H;
    const long ld_hp = t == 0 ? H : ldy;
    const float* cp = t == 0 ? a.c + b0 * H : c;
    float* u = y0 + t * H;
    qle_qmatmul(a.k, a.w->wh, m, hp, ld_hp, u, ldy, u, ldy);
    for (long r = 0; r < m; ++r)
      a.k->gates(H, u + r * ldy, hp + r * ld_hp, cp + r * H, a.gs, a.gb, a.alpha, u + r * ldy,
                 c + r * H);
  }
  for (long r = 0; r < m; ++r)
    memcpy(a.h_out + (b0 + r) * H, y0 + r * ldy + (a.T - 1) * H, sizeof(float) * H);
}

struct CpuKernel {
  const QleCpuKernels* k;
  bool sequence;
  Mode mode;
  long block;
  // Weights packed once from constant initializers (null when they are graph inputs: then
  // every call packs its own copy).
  std::unique_ptr<Weights> packed;
  std::string pack_error;

  const char* op() const { return sequence ? "QLLSTMSequence" : "QLLSTMCell"; }

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return qle_guarded(op(), [&]() -> OrtStatusPtr {
      g_compute_calls.fetch_add(1, std::memory_order_relaxed);
      Ort::KernelContext ctx(context);
      Problem p;
      if (OrtStatusPtr st = validate(ctx, sequence, mode, block, &p)) return st;
      char msg[400];
      if (!pack_error.empty()) {
        snprintf(msg, sizeof msg, "%s: %s", op(), pack_error.c_str());
        return make_status(ORT_INVALID_ARGUMENT, msg);
      }
      Weights local;
      const Weights* w = packed.get();
      if (w == nullptr) {
        if (const char* e = pack_weights(mode, block, p.in[3], p.wx_type, p.in[4], p.wh_type,
                                         p.f(9), p.f(10), p.D, p.H, &local)) {
          snprintf(msg, sizeof msg, "%s: %s", op(), e);
          return make_status(ORT_INVALID_ARGUMENT, msg);
        }
        w = &local;
      }
      return sequence ? run_sequence(ctx, p, w) : run_cell(ctx, p, w);
    });
  }

  // x as float32: the input itself, or converted from float16 into `buf`.
  const float* x_f32(const Problem& p, long n, std::vector<float>* buf) const {
    if (mode != Mode::F16) return p.f(0);
    buf->resize((size_t)n);
    qle_f16_to_f32(n, static_cast<const uint16_t*>(p.in[0]), buf->data());
    return buf->data();
  }

  Args args(const Problem& p, const Weights* w, const float* x, float* Y, float* h_out,
            float* c_out) const {
    return Args{k,      w,      p.B,    p.T,    p.D,       p.H,   x,     p.f(1), p.f(2),
                p.f(5), p.f(6), p.f(7), *p.f(8), Y,        h_out, c_out};
  }

  OrtStatusPtr run_cell(Ort::KernelContext& ctx, const Problem& p, const Weights* w) const {
    const int64_t shape[2] = {p.B, p.H};
    float* h_out = ctx.GetOutput(0, shape, 2).GetTensorMutableData<float>();
    float* c_out = ctx.GetOutput(1, shape, 2).GetTensorMutableData<float>();
    if (p.B == 0 || p.H == 0) return nullptr;
    std::vector<float> xbuf;
    const Args a = args(p, w, x_f32(p, p.B * p.D, &xbuf), nullptr, h_out, c_out);
    const long groups = (p.B + kRowGroup - 1) / kRowGroup;
    if (groups > 1 && qle_mul_sat(qle_mul_sat(p.B, p.D + p.H), p.H) >= kParallelMacs)
      ctx.ParallelFor(cell_task, (size_t)groups, 0, const_cast<Args*>(&a));
    else
      cell_rows(a, 0, p.B);
    return nullptr;
  }

  OrtStatusPtr run_sequence(Ort::KernelContext& ctx, const Problem& p, const Weights* w) const {
    const int64_t yshape[3] = {p.B, p.T, p.H}, sshape[2] = {p.B, p.H};
    float* Y = ctx.GetOutput(0, yshape, 3).GetTensorMutableData<float>();
    float* h_out = ctx.GetOutput(1, sshape, 2).GetTensorMutableData<float>();
    float* c_out = ctx.GetOutput(2, sshape, 2).GetTensorMutableData<float>();
    if (p.B == 0 || p.H == 0) return nullptr;
    if (p.T == 0) {
      memcpy(h_out, p.in[1], sizeof(float) * p.B * p.H);
      memcpy(c_out, p.in[2], sizeof(float) * p.B * p.H);
      return nullptr;
    }
    std::vector<float> xbuf;
    const long M = p.B * p.T;
    const Args a = args(p, w, x_f32(p, M * p.D, &xbuf), Y, h_out, c_out);
    const long chunks = (M + kProjChunk - 1) / kProjChunk;
    if (chunks > 1 && qle_mul_sat(qle_mul_sat(M, p.D), p.H) >= kParallelMacs)
      ctx.ParallelFor(seq_project_task, (size_t)chunks, 0, const_cast<Args*>(&a));
    else
      qle_qmatmul(k, w->wx, M, a.x, p.D, a.bias, 0, Y, p.H);
    const long groups = (p.B + kRowGroup - 1) / kRowGroup;
    if (groups > 1 && qle_mul_sat(qle_mul_sat(qle_mul_sat(p.T, p.H), p.H), kRowGroup) >= kParallelMacs)
      ctx.ParallelFor(seq_recur_task, (size_t)groups, 0, const_cast<Args*>(&a));
    else
      for (long g = 0; g < groups; ++g) seq_recur_task(const_cast<Args*>(&a), (size_t)g);
    return nullptr;
  }
};

// Packs the weights at kernel creation when W_x, W_h (and their scales) are constant
// initializers with consistent shapes; otherwise leaves it to each Compute call.
void prepack(const OrtKernelInfo* info, CpuKernel* kern) {
  if (kern->mode == Mode::F32) return;
  Ort::ConstKernelInfo ki(info);
  const size_t n = quantized_integer(kern->mode) ? kMaxInputs : kRegularInputs;
  if (ki.GetInputCount() != n) return;
  const size_t idx[4] = {3, 4, 9, 10};
  Ort::ConstValue v[4];
  for (size_t j = 0; j < (n == kMaxInputs ? 4u : 2u); ++j) {
    int is_const = 0;
    v[j] = ki.GetTensorConstantInput(idx[j], &is_const);
    if (!is_const || v[j] == nullptr) return;
    if (!type_ok(kern->mode, idx[j], v[j].GetTensorTypeAndShapeInfo().GetElementType())) return;
  }
  const ONNXTensorElementDataType tx = v[0].GetTensorTypeAndShapeInfo().GetElementType();
  const ONNXTensorElementDataType th = v[1].GetTensorTypeAndShapeInfo().GetElementType();
  const std::vector<int64_t> sx = v[0].GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> sh = v[1].GetTensorTypeAndShapeInfo().GetShape();
  if (sx.size() != 2 || sh.size() != 2 || sx[1] != qle_qmatrix_width(kern->mode, tx, sh[0]) ||
      sh[1] != qle_qmatrix_width(kern->mode, th, sh[0]))
    return;
  const long D = (long)sx[0], H = (long)sh[0];
  if (!qle_size_ok(D, 1, kQleMaxWidth) || !qle_size_ok(H, 1, kQleMaxWidth)) return;
  const float *scx = nullptr, *sch = nullptr;
  if (n == kMaxInputs) {
    const bool i4 = kern->mode == Mode::I4;
    const std::vector<int64_t> want_x = i4 ? std::vector<int64_t>{qle_ceil_div(D, kern->block), H}
                                           : std::vector<int64_t>{H};
    const std::vector<int64_t> want_h = i4 ? std::vector<int64_t>{qle_ceil_div(H, kern->block), H}
                                           : std::vector<int64_t>{H};
    if (v[2].GetTensorTypeAndShapeInfo().GetShape() != want_x ||
        v[3].GetTensorTypeAndShapeInfo().GetShape() != want_h)
      return;
    scx = static_cast<const float*>(v[2].GetTensorRawData());
    sch = static_cast<const float*>(v[3].GetTensorRawData());
  }
  if (kern->mode == Mode::I8Dyn && (D > kQleMaxDynamicK || H > kQleMaxDynamicK)) return;
  std::unique_ptr<Weights> w(new Weights);
  if (const char* e = pack_weights(kern->mode, kern->block, v[0].GetTensorRawData(), tx,
                                   v[1].GetTensorRawData(), th, scx, sch, D, H, w.get())) {
    kern->pack_error = e;
    return;
  }
  kern->packed = std::move(w);
}

// ---------------------------------------------------------------------------------------------
// Op definitions: 9 regular inputs plus 2 optional scale inputs; x, W_x and W_h take whatever
// element type the mode gives them (checked by validate()), every other input is float32.

template <typename TOp, typename TKernel>
struct QleOpBase : Ort::CustomOpBase<TOp, TKernel, true> {
  explicit QleOpBase(bool seq) : sequence(seq) {}
  const char* GetName() const { return sequence ? "QLLSTMSequence" : "QLLSTMCell"; }
  size_t GetInputTypeCount() const { return kMaxInputs; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return (i == 0 || i == 3 || i == 4) ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED
                                        : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return i < kRegularInputs ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
  }
  size_t GetOutputTypeCount() const { return sequence ? 3 : 2; }
  ONNXTensorElementDataType GetOutputType(size_t) const {
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  bool sequence;
};

struct CpuOp : QleOpBase<CpuOp, CpuKernel> {
  explicit CpuOp(bool seq) : QleOpBase(seq) {}
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    const char* isa = getenv(kIsaEnv);
    const char* err = nullptr;
    const QleCpuKernels* k = qle_select_isa(isa, &err);
    if (k == nullptr) {
      char msg[300];
      snprintf(msg, sizeof msg, "%s: %s=%s: %s", GetName(), kIsaEnv, isa, err);
      return make_status(ORT_INVALID_ARGUMENT, msg);
    }
    Mode mode;
    long block;
    if (OrtStatusPtr st = qle_read_qmode(api, info, GetName(), &mode, &block)) return st;
    std::unique_ptr<CpuKernel> kern(new CpuKernel{k, sequence, mode, block, nullptr, {}});
    OrtStatusPtr st = qle_guarded(GetName(), [&]() -> OrtStatusPtr {
      prepack(info, kern.get());
      return nullptr;
    });
    if (st != nullptr) return st;
    *kernel = kern.release();
    return nullptr;
  }
};

#if defined(QLE_WITH_CUDA)
int cuda_mode(Mode m) {
  switch (m) {
    case Mode::F32: return QLE_CUDA_F32;
    case Mode::F16: return QLE_CUDA_F16;
    case Mode::I8: return QLE_CUDA_I8;
    case Mode::I8Dyn: return QLE_CUDA_I8_DYNAMIC;
    case Mode::I4: return QLE_CUDA_I4;
  }
  return QLE_CUDA_F32;
}

// How a matrix input of element type t is stored in mode m.
int cuda_matrix_mode(Mode m, ONNXTensorElementDataType t) {
  return qle_qmatrix_packed(m, t) ? QLE_CUDA_I4_PACKED : cuda_mode(m);
}

struct CudaKernel {
  bool sequence;
  Mode mode;
  long block;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    const char* op = sequence ? "QLLSTMSequence" : "QLLSTMCell";
    return qle_guarded(op, [&]() -> OrtStatusPtr {
      g_compute_calls.fetch_add(1, std::memory_order_relaxed);
      Ort::KernelContext ctx(context);
      Problem p;
      if (OrtStatusPtr st = validate(ctx, sequence, mode, block, &p)) return st;
      void* stream = ctx.GetGPUComputeStream();
      QleCudaWeights w{cuda_mode(mode),
                       block,
                       p.in[3],
                       p.in[4],
                       p.f(9),
                       p.f(10),
                       cuda_matrix_mode(mode, p.wx_type),
                       cuda_matrix_mode(mode, p.wh_type)};
      const int64_t sshape[2] = {p.B, p.H};
      int err;
      if (sequence) {
        const int64_t yshape[3] = {p.B, p.T, p.H};
        float* Y = ctx.GetOutput(0, yshape, 3).GetTensorMutableData<float>();
        float* h_out = ctx.GetOutput(1, sshape, 2).GetTensorMutableData<float>();
        float* c_out = ctx.GetOutput(2, sshape, 2).GetTensorMutableData<float>();
        err = qle_cuda_sequence(stream, &w, p.B, p.T, p.D, p.H, p.in[0], p.f(1), p.f(2), p.f(5),
                                p.f(6), p.f(7), p.f(8), Y, h_out, c_out);
      } else {
        float* h_out = ctx.GetOutput(0, sshape, 2).GetTensorMutableData<float>();
        float* c_out = ctx.GetOutput(1, sshape, 2).GetTensorMutableData<float>();
        err = qle_cuda_cell(stream, &w, p.B, p.D, p.H, p.in[0], p.f(1), p.f(2), p.f(5), p.f(6),
                            p.f(7), p.f(8), h_out, c_out);
      }
      if (err == 0) return nullptr;
      char msg[300];
      snprintf(msg, sizeof msg, "%s: CUDA error %d: %s", op, err, qle_cuda_error_string(err));
      return make_status(ORT_EP_FAIL, msg);
    });
  }
};

struct CudaOp : QleOpBase<CudaOp, CudaKernel> {
  explicit CudaOp(bool seq) : QleOpBase(seq) {}
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    Mode mode;
    long block;
    if (OrtStatusPtr st = qle_read_qmode(api, info, GetName(), &mode, &block)) return st;
    *kernel = new CudaKernel{sequence, mode, block};
    return nullptr;
  }
};
#endif

const CpuOp g_cpu_cell(false), g_cpu_seq(true);
#if defined(QLE_WITH_CUDA)
const CudaOp g_cuda_cell(false), g_cuda_seq(true);
#endif

// Created once and shared by every session that registers the library; never released
// (sessions keep pointers into it).
OrtCustomOpDomain* g_domain = nullptr;
std::once_flag g_domain_once;
OrtStatusPtr g_domain_error = nullptr;

void create_domain(const OrtApi* api) {
  OrtCustomOpDomain* d = nullptr;
  OrtStatusPtr st = api->CreateCustomOpDomain(kDomain, &d);
  std::vector<const OrtCustomOp*> ops = {&g_cpu_cell, &g_cpu_seq,
#if defined(QLE_WITH_CUDA)
                                         &g_cuda_cell, &g_cuda_seq,
#endif
  };
  qle_family_ops(&ops);
#if defined(QLE_WITH_CUDA)
  qle_family_cuda_ops(&ops);
#endif
  for (const OrtCustomOp* op : ops) {
    if (st != nullptr) break;
    st = api->CustomOpDomain_Add(d, op);
  }
  if (st != nullptr) {
    g_domain_error = st;
    if (d != nullptr) api->ReleaseCustomOpDomain(d);
    return;
  }
  g_domain = d;
}

char g_info[2048];
std::once_flag g_info_once;

// The build fingerprint (compiler, target, flags) that runtime/native/build.py's up-to-date check
// looks for in the file.
#if !defined(QLE_BUILD_ID)
#define QLE_BUILD_ID "qlstm_edge-build:unstamped"
#endif
__attribute__((used)) const char kBuildId[] = QLE_BUILD_ID;

}  // namespace

QLE_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                     const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    char msg[400];
    snprintf(msg, sizeof msg,
             "qlstm_edge native ops were built for onnxruntime API version %d; this runtime "
             "(onnxruntime %s) provides an older API; use the function-body path "
             "(native='off') or rebuild the library against this runtime's headers",
             ORT_API_VERSION, api_base->GetVersionString());
    const OrtApi* old = api_base->GetApi(1);
    return old->CreateStatus(ORT_FAIL, msg);
  }
  Ort::InitApi(api);
  std::call_once(g_domain_once, create_domain, api);
  if (g_domain == nullptr) {
    char msg[400];
    snprintf(msg, sizeof msg, "qlstm_edge native ops: creating the op domain failed: %s",
             api->GetErrorMessage(g_domain_error));
    return api->CreateStatus(ORT_FAIL, msg);
  }
  return api->AddCustomOpDomain(options, g_domain);
}

// JSON description of the build and of the CPU paths this machine can run.
QLE_EXPORT const char* qle_native_info(void) {
  std::call_once(g_info_once, [] {
    const char* err = nullptr;
    const QleCpuKernels* best = qle_select_isa(nullptr, &err);
    size_t used = (size_t)snprintf(
        g_info, sizeof g_info,
        "{\"arch\": \"%s\", \"ort_api_version\": %d, \"cuda\": %s, \"quant_modes\": [\"fp16\", "
        "\"int8\", \"int8-dynamic\", \"int4\"], \"isa_supported\": {",
        QLE_ARCH, ORT_API_VERSION,
#if defined(QLE_WITH_CUDA)
        "true"
#else
        "false"
#endif
    );
    for (int i = 0; i < QLE_ISA_COUNT && used < sizeof g_info; ++i)
      used += (size_t)snprintf(g_info + used, sizeof g_info - used, "%s\"%s\": %s", i ? ", " : "",
                               qle_isa_names[i], qle_cpu_supports(qle_isa_names[i]) ? "true" : "false");
    // every op the domain registers; the quant_modes above apply to the quantized_ops only (the
    // others take float32 nodes)
    std::vector<const char*> ops = {"QLLSTMCell", "QLLSTMSequence"};
    qle_family_op_names(&ops);
    if (used < sizeof g_info)
      used += (size_t)snprintf(g_info + used, sizeof g_info - used, "}, \"isa_auto\": \"%s\", \"ops\": [",
                               best->name);
    for (size_t i = 0; i < ops.size() && used < sizeof g_info; ++i)
      used += (size_t)snprintf(g_info + used, sizeof g_info - used, "%s\"%s\"", i ? ", " : "", ops[i]);
    std::vector<const char*> quantized = {"QLLSTMCell", "QLLSTMSequence"};
    qle_family_quantized_op_names(&quantized);
    if (used < sizeof g_info)
      used += (size_t)snprintf(g_info + used, sizeof g_info - used, "], \"quantized_ops\": [");
    for (size_t i = 0; i < quantized.size() && used < sizeof g_info; ++i)
      used += (size_t)snprintf(g_info + used, sizeof g_info - used, "%s\"%s\"", i ? ", " : "", quantized[i]);
    // the ops that also have CUDA kernels (registered for CUDAExecutionProvider); empty without CUDA
    std::vector<const char*> cuda_ops;
#if defined(QLE_WITH_CUDA)
    cuda_ops = {"QLLSTMCell", "QLLSTMSequence"};
    qle_family_cuda_op_names(&cuda_ops);
#endif
    if (used < sizeof g_info)
      used += (size_t)snprintf(g_info + used, sizeof g_info - used, "], \"cuda_ops\": [");
    for (size_t i = 0; i < cuda_ops.size() && used < sizeof g_info; ++i)
      used += (size_t)snprintf(g_info + used, sizeof g_info - used, "%s\"%s\"", i ? ", " : "", cuda_ops[i]);
    if (used < sizeof g_info) snprintf(g_info + used, sizeof g_info - used, "]}");
  });
  return g_info;
}

// Number of kernel Compute calls in this process (lets tests and the runtime observe that the
// native kernel, not the function body, ran).
QLE_EXPORT unsigned long long qle_native_compute_calls(void) {
  return g_compute_calls.load(std::memory_order_relaxed) + qle_family_compute_calls()
#if defined(QLE_WITH_CUDA)
         + qle_family_cuda_compute_calls()
#endif
      ;
}
