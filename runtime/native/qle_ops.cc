// onnxruntime custom-op registration for the qlstm_edge domain (op-set version 1):
//   QLLSTMCell(x, h, c, W_x, W_h, bias, gate_scale, gate_bias, alpha) -> (h_new, c_new)
//   QLLSTMSequence(x, h0, c0, W_x, W_h, bias, gate_scale, gate_bias, alpha) -> (Y, h_T, c_T)
// CPU kernels always; CUDA kernels when built with QLE_WITH_CUDA.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <atomic>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qle_cpu.h"
#if defined(QLE_WITH_CUDA)
#include "qle_cuda.h"
#endif

#define QLE_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr const char* kDomain = "qlstm_edge";
constexpr const char* kIsaEnv = "QLSTM_EDGE_NATIVE_ISA";
constexpr const char* kInputNames[9] = {"x", "h", "c", "W_x", "W_h",
                                        "bias", "gate_scale", "gate_bias", "alpha"};

std::atomic<unsigned long long> g_compute_calls{0};

struct Dims {
  size_t rank = 0;
  int64_t d[4] = {0, 0, 0, 0};
};

struct Problem {
  long B = 0, T = 1, D = 0, H = 0;
  const float* in[9] = {};
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

// Reads the shape of input i; fails for non-float tensors and ranks above 4.
OrtStatusPtr input_dims(const Ort::KernelContext& ctx, const char* op, size_t i, Dims* out) {
  Ort::ConstValue v = ctx.GetInput(i);
  Ort::TensorTypeAndShapeInfo info = v.GetTensorTypeAndShapeInfo();
  char msg[256];
  if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
    snprintf(msg, sizeof msg, "%s: input '%s' must be float32", op, kInputNames[i]);
    return make_status(ORT_INVALID_ARGUMENT, msg);
  }
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

// Checks all nine inputs against the op contract and fills *p (B, T, D, H, data pointers).
OrtStatusPtr validate(const Ort::KernelContext& ctx, bool sequence, Problem* p) {
  const char* op = sequence ? "QLLSTMSequence" : "QLLSTMCell";
  char msg[300];
  if (ctx.GetInputCount() != 9) {
    snprintf(msg, sizeof msg, "%s: expected 9 inputs, got %zu", op, ctx.GetInputCount());
    return make_status(ORT_INVALID_ARGUMENT, msg);
  }
  Dims s[9];
  for (size_t i = 0; i < 9; ++i)
    if (OrtStatusPtr st = input_dims(ctx, op, i, &s[i])) return st;
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
  const int64_t bh[2] = {B, H}, dh[2] = {D, H}, hh[2] = {H, H}, h1[1] = {H}, fh[2] = {4, H};
  OrtStatusPtr st = nullptr;
  if ((st = expect_shape(op, 1, s[1], 2, bh, "[B, H] (B from x)")) ||
      (st = expect_shape(op, 2, s[2], 2, bh, "[B, H]")) ||
      (st = expect_shape(op, 3, s[3], 2, dh, "[D, H] (input-major)")) ||
      (st = expect_shape(op, 4, s[4], 2, hh, "[H, H] (input-major)")) ||
      (st = expect_shape(op, 5, s[5], 1, h1, "[H]")) ||
      (st = expect_shape(op, 6, s[6], 2, fh, "[4, H]")) ||
      (st = expect_shape(op, 7, s[7], 2, fh, "[4, H]")) ||
      (st = expect_shape(op, 8, s[8], 0, nullptr, "[] (0-d scalar)")))
    return st;
  p->B = (long)B;
  p->T = (long)T;
  p->D = (long)D;
  p->H = (long)H;
  for (size_t i = 0; i < 9; ++i) p->in[i] = ctx.GetInput(i).GetTensorData<float>();
  return nullptr;
}

template <typename F>
OrtStatusPtr guarded(const char* op, F&& body) {
  try {
    return body();
  } catch (const Ort::Exception& e) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", op, e.what());
    return make_status(e.GetOrtErrorCode(), msg);
  } catch (const std::exception& e) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", op, e.what());
    return make_status(ORT_FAIL, msg);
  }
}

// ---------------------------------------------------------------------------------------------
// CPU

constexpr long kRowGroup = 4;     // batch rows that share one pass over the weights
constexpr long kProjChunk = 64;   // rows of the sequence input projection per task
constexpr long kParallelMacs = 1L << 17;

struct CellTask {
  const QleCpuKernels* k;
  long B, D, H;
  const float *x, *h, *c, *Wx, *Wh, *bias, *gs, *gb;
  float alpha;
  float *h_out, *c_out;
};

void cell_rows(const CellTask& a, long r0, long r1) {
  const long m = r1 - r0, H = a.H;
  float* u = a.h_out + r0 * H;
  a.k->gemm(m, H, a.D, a.x + r0 * a.D, a.D, a.Wx, H, a.bias, 0, u, H);
  a.k->gemm(m, H, H, a.h + r0 * H, H, a.Wh, H, u, H, u, H);
  for (long r = r0; r < r1; ++r)
    a.k->gates(H, a.h_out + r * H, a.h + r * H, a.c + r * H, a.gs, a.gb, a.alpha,
               a.h_out + r * H, a.c_out + r * H);
}

void cell_task(void* p, size_t g) {
  const CellTask& a = *static_cast<const CellTask*>(p);
  const long r0 = (long)g * kRowGroup;
  cell_rows(a, r0, r0 + kRowGroup < a.B ? r0 + kRowGroup : a.B);
}

struct SeqTask {
  const QleCpuKernels* k;
  long B, T, D, H;
  const float *x, *h0, *c0, *Wx, *Wh, *bias, *gs, *gb;
  float alpha;
  float *Y, *h_out, *c_out;
};

void seq_project_task(void* p, size_t chunk) {
  const SeqTask& a = *static_cast<const SeqTask*>(p);
  const long M = a.B * a.T, r0 = (long)chunk * kProjChunk;
  const long m = M - r0 < kProjChunk ? M - r0 : kProjChunk;
  a.k->gemm(m, a.H, a.D, a.x + r0 * a.D, a.D, a.Wx, a.H, a.bias, 0, a.Y + r0 * a.H, a.H);
}

// Recurrence for batch rows [b0, b0 + m): Y[:, t] holds x_t @ W_x + bias and is overwritten
// with h_t; c_out carries c between steps.
void seq_recur_task(void* p, size_t g) {
  const SeqTask& a = *static_cast<const SeqTask*>(p);
  const long b0 = (long)g * kRowGroup;
  const long m = a.B - b0 < kRowGroup ? a.B - b0 : kRowGroup;
  const long H = a.H, ldy = a.T * H;
  float* y0 = a.Y + b0 * ldy;
  float* c = a.c_out + b0 * H;
  for (long t = 0; t < a.T; ++t) {
    const float* hp = t == 0 ? a.h0 + b0 * H : y0 + (t - 1) * H;
    const long ld_hp = t == 0 ? H : ldy;
    const float* cp = t == 0 ? a.c0 + b0 * H : c;
    float* u = y0 + t * H;
    a.k->gemm(m, H, H, hp, ld_hp, a.Wh, H, u, ldy, u, ldy);
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

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return guarded(sequence ? "QLLSTMSequence" : "QLLSTMCell", [&]() -> OrtStatusPtr {
      g_compute_calls.fetch_add(1, std::memory_order_relaxed);
      Ort::KernelContext ctx(context);
      Problem p;
      if (OrtStatusPtr st = validate(ctx, sequence, &p)) return st;
      return sequence ? run_sequence(ctx, p) : run_cell(ctx, p);
    });
  }

  OrtStatusPtr run_cell(Ort::KernelContext& ctx, const Problem& p) const {
    const int64_t shape[2] = {p.B, p.H};
    float* h_out = ctx.GetOutput(0, shape, 2).GetTensorMutableData<float>();
    float* c_out = ctx.GetOutput(1, shape, 2).GetTensorMutableData<float>();
    if (p.B == 0 || p.H == 0) return nullptr;
    CellTask a{k,        p.B,      p.D,      p.H,      p.in[0],   p.in[1], p.in[2],
               p.in[3],  p.in[4],  p.in[5],  p.in[6],  p.in[7],   *p.in[8], h_out, c_out};
    const long groups = (p.B + kRowGroup - 1) / kRowGroup;
    if (groups > 1 && p.B * (p.D + p.H) * p.H >= kParallelMacs)
      ctx.ParallelFor(cell_task, (size_t)groups, 0, &a);
    else
      cell_rows(a, 0, p.B);
    return nullptr;
  }

  OrtStatusPtr run_sequence(Ort::KernelContext& ctx, const Problem& p) const {
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
    SeqTask a{k,       p.B,     p.T,     p.D,     p.H,      p.in[0], p.in[1], p.in[2], p.in[3],
              p.in[4], p.in[5], p.in[6], p.in[7], *p.in[8], Y,       h_out,   c_out};
    const long M = p.B * p.T;
    const long chunks = (M + kProjChunk - 1) / kProjChunk;
    if (chunks > 1 && M * p.D * p.H >= kParallelMacs)
      ctx.ParallelFor(seq_project_task, (size_t)chunks, 0, &a);
    else
      k->gemm(M, p.H, p.D, a.x, p.D, a.Wx, p.H, a.bias, 0, Y, p.H);
    const long groups = (p.B + kRowGroup - 1) / kRowGroup;
    if (groups > 1 && p.T * p.H * p.H * kRowGroup >= kParallelMacs)
      ctx.ParallelFor(seq_recur_task, (size_t)groups, 0, &a);
    else
      for (long g = 0; g < groups; ++g) seq_recur_task(&a, (size_t)g);
    return nullptr;
  }
};

// ---------------------------------------------------------------------------------------------
// Op definitions

template <typename TOp, typename TKernel>
struct QleOpBase : Ort::CustomOpBase<TOp, TKernel, true> {
  explicit QleOpBase(bool seq) : sequence(seq) {}
  const char* GetName() const { return sequence ? "QLLSTMSequence" : "QLLSTMCell"; }
  size_t GetInputTypeCount() const { return 9; }
  ONNXTensorElementDataType GetInputType(size_t) const {
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
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
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo*, void** kernel) const {
    const char* isa = getenv(kIsaEnv);
    const char* err = nullptr;
    const QleCpuKernels* k = qle_select_isa(isa, &err);
    if (k == nullptr) {
      char msg[300];
      snprintf(msg, sizeof msg, "%s: %s=%s: %s", GetName(), kIsaEnv, isa, err);
      return make_status(ORT_INVALID_ARGUMENT, msg);
    }
    *kernel = new CpuKernel{k, sequence};
    return nullptr;
  }
};

#if defined(QLE_WITH_CUDA)
struct CudaKernel {
  bool sequence;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    const char* op = sequence ? "QLLSTMSequence" : "QLLSTMCell";
    return guarded(op, [&]() -> OrtStatusPtr {
      g_compute_calls.fetch_add(1, std::memory_order_relaxed);
      Ort::KernelContext ctx(context);
      Problem p;
      if (OrtStatusPtr st = validate(ctx, sequence, &p)) return st;
      void* stream = ctx.GetGPUComputeStream();
      const int64_t sshape[2] = {p.B, p.H};
      int err;
      if (sequence) {
        const int64_t yshape[3] = {p.B, p.T, p.H};
        float* Y = ctx.GetOutput(0, yshape, 3).GetTensorMutableData<float>();
        float* h_out = ctx.GetOutput(1, sshape, 2).GetTensorMutableData<float>();
        float* c_out = ctx.GetOutput(2, sshape, 2).GetTensorMutableData<float>();
        err = qle_cuda_sequence(stream, p.B, p.T, p.D, p.H, p.in[0], p.in[1], p.in[2], p.in[3],
                                p.in[4], p.in[5], p.in[6], p.in[7], p.in[8], Y, h_out, c_out);
      } else {
        float* h_out = ctx.GetOutput(0, sshape, 2).GetTensorMutableData<float>();
        float* c_out = ctx.GetOutput(1, sshape, 2).GetTensorMutableData<float>();
        err = qle_cuda_cell(stream, p.B, p.D, p.H, p.in[0], p.in[1], p.in[2], p.in[3], p.in[4],
                            p.in[5], p.in[6], p.in[7], p.in[8], h_out, c_out);
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
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo*, void** kernel) const {
    *kernel = new CudaKernel{sequence};
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
  const OrtCustomOp* ops[] = {&g_cpu_cell, &g_cpu_seq,
#if defined(QLE_WITH_CUDA)
                              &g_cuda_cell, &g_cuda_seq,
#endif
  };
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

char g_info[256];
std::once_flag g_info_once;

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
    snprintf(g_info, sizeof g_info,
             "{\"ort_api_version\": %d, \"cuda\": %s, \"isa_supported\": {\"scalar\": true, "
             "\"avx2\": %s, \"avx512\": %s}, \"isa_auto\": \"%s\"}",
             ORT_API_VERSION,
#if defined(QLE_WITH_CUDA)
             "true",
#else
             "false",
#endif
             qle_cpu_has_avx2() ? "true" : "false", qle_cpu_has_avx512() ? "true" : "false",
             best->name);
  });
  return g_info;
}

// Number of kernel Compute calls in this process (lets tests and the runtime observe that the
// native kernel, not the function body, ran).
QLE_EXPORT unsigned long long qle_native_compute_calls(void) {
  return g_compute_calls.load(std::memory_order_relaxed);
}
