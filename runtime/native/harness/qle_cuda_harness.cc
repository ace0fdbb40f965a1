// Runs every CUDA kernel of the native library against its CPU kernel on random inputs, without
// onnxruntime: QLLSTMCell / QLLSTMSequence (qllstm/qle_qllstm_cuda.h), PRLSTMStep / PRLSTMSequence
// (prlstm/qle_prlstm_cuda.h), sLSTMCell / sLSTMSequence and mLSTMCell / mLSTMSequence
// (xlstm/qle_xlstm_cuda.h), xLSTMLargeBlock / xLSTMLargeBlockSequence (xlstm/qle_large_block_cuda.h), the LM's
// mLSTMBlock / mLSTMBlockSequence and sLSTMBlock / sLSTMBlockSequence (xlstm/qle_mlstm_block_cuda.h,
// qle_slstm_block_cuda.h), in every weight mode each op takes, on several shapes (odd sizes, batch > 1, more units
// than a thread block has threads). Each case makes two calls on each side,
// the second from the state the first returned on that side, and compares every output of both
// calls. One line per case; exit status 0 when every case is within its tolerance, 1 when one is
// not, 77 when no CUDA device is usable.
//
//   qle_cuda_harness [--cpu-only] [--list] [FILTER]
//     --cpu-only  run the CPU side of every case only (no GPU needed): the inputs meet the kernels'
//                 contracts and the references run
//     --list      print the cases and exit
//     FILTER      run only the cases whose name contains FILTER
//
// The reference is the scalar CPU kernel table (qle_kernels_scalar): it sums every product in index
// order, as the CUDA dot products do, so the order-dependent tolerances below hold as stated.
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "qle_block_core.h"
#include "qle_block_math.h"
#include "qle_cpu.h"
#include "qle_cuda_modes.h"
#include "qle_large_block.h"
#include "qle_large_block_cuda.h"
#include "qle_mlstm_block.h"
#include "qle_mlstm_block_cuda.h"
#include "qle_prlstm.h"
#include "qle_prlstm_cuda.h"
#include "qle_qllstm.h"
#include "qle_qllstm_cuda.h"
#include "qle_qmatrix.h"
#include "qle_slstm_block.h"
#include "qle_slstm_block_cuda.h"
#include "qle_xlstm.h"
#include "qle_xlstm_cuda.h"

namespace {

constexpr int kExitNoGpu = 77;
// The CPU side of every case: the scalar kernel table (see the top of this file).
const QleCpuKernels* const kReference = &qle_kernels_scalar;

// Tolerances: the largest |GPU - CPU| allowed on a tensor is tol * max(1, max |CPU value|).
//
// Exact: both sides do the same operations in the same order. Each family's gate maths is one
// source (<family>/qle_<family>_math.h over core/qle_lanes.h: exp, sigmoid, tanh, log are the same
// polynomials on both sides, no libm) built without fused multiply-adds on both (-ffp-contract=off,
// --fmad=false); a product's sum starts from 0 and adds k in index order on both; the bias (or x)
// is added to the finished sum on both; fp16 rounds the same inputs and sums, int8 scales the same
// sum, int8-dynamic quantizes with the same arithmetic and sums integers exactly.
constexpr double kExact = 0.0;
// Float order: float32 rounding differs, by a few ulp a step. In fp32 (and int4 with more than one
// block) the QL-LSTM and PR-LSTM CPU products accumulate onto the bias (qle_qmatmul's init) where
// the GPU adds the bias to the finished sum. The bound is the library's native-vs-function-body
// float32 tolerance.
constexpr double kFloatOrder = 1e-5;

// The tolerance of a family whose CPU products start from the bias (QL-LSTM, PR-LSTM). The CPU
// accumulates onto the bias (and, in int4, block by block onto it), the GPU adds the bias to the
// finished sum: float order in fp32 and in int4 with more than one block (every int4 shape below
// has one). fp16, int8 and int8-dynamic add the bias to the same rounded or scaled sum on both
// sides: exact.
double bias_first_tol(const QleQMode q, const char** why) {
  if (q == QleQMode::F32) return *why = "float order (bias first on the CPU)", kFloatOrder;
  if (q == QleQMode::I4) return *why = "float order (int4 blocks onto the bias on the CPU)", kFloatOrder;
  return *why = "exact (same operations, same order)", kExact;
}

// --- random inputs ------------------------------------------------------------------------------

struct Rng {
  uint64_t s;
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(s >> 33);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * (float)(next() >> 8) / 8388608.0f; }
  int integer(int lo, int hi) { return lo + (int)(next() % (uint32_t)(hi - lo + 1)); }
  std::vector<float> floats(size_t n, float lo, float hi) {
    std::vector<float> v(n);
    for (float& x : v) x = uniform(lo, hi);
    return v;
  }
};

uint16_t f16_bits(float x) {
  const qle_f16 h = (qle_f16)x;
  uint16_t b;
  memcpy(&b, &h, sizeof b);
  return b;
}

// --- weight modes -------------------------------------------------------------------------------

struct Mode {
  const char* name;
  QleQMode q;
  int cuda;          // the node's QLE_CUDA_* mode
  bool int4_onnx;    // int4 stored as ONNX INT4 [K, N] (files exported before the packed form)
};

const Mode kFp32{"fp32", QleQMode::F32, QLE_CUDA_F32, false};
const Mode kModes[] = {kFp32,
                       {"fp16", QleQMode::F16, QLE_CUDA_F16, false},
                       {"int8", QleQMode::I8, QLE_CUDA_I8, false},
                       {"int8-dynamic", QleQMode::I8Dyn, QLE_CUDA_I8_DYNAMIC, false},
                       {"int4", QleQMode::I4, QLE_CUDA_I4, false},
                       {"int4-onnx", QleQMode::I4, QLE_CUDA_I4, true}};

// A stack of S matrices [K, N] (an input [S, K, N]; S = 1 for a plain matrix) as a node of the mode
// holds it, and its scales (integer modes: int8 [S, N], int4 [S, ceil(K / block), N]).
struct Matrix {
  ONNXTensorElementDataType type;
  int cuda_mode;  // how the CUDA kernels read it
  std::vector<uint8_t> bytes;
  std::vector<float> scale;
};

Matrix make_matrix(Rng& rng, const Mode& m, long S, long K, long N, long block, float range) {
  const size_t n = (size_t)(S * K * N);
  Matrix w{ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, m.cuda, {}, {}};
  if (m.q == QleQMode::F32 || m.q == QleQMode::F16) {
    const std::vector<float> v = rng.floats(n, -range, range);
    if (m.q == QleQMode::F32) {
      w.bytes.resize(n * sizeof(float));
      if (n != 0) memcpy(w.bytes.data(), v.data(), w.bytes.size());
      return w;
    }
    w.type = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    w.bytes.resize(n * 2);
    for (size_t i = 0; i < n; ++i) {
      const uint16_t b = f16_bits(v[i]);
      memcpy(&w.bytes[2 * i], &b, 2);
    }
    return w;
  }
  // integer modes: values over the whole range of the storage, scales keeping |W * scale| <= 0.05
  const bool int4 = m.q == QleQMode::I4;
  const long blocks = int4 ? (K + block - 1) / block : 1;
  const int qmax = int4 ? 8 : 127;
  w.scale = rng.floats((size_t)(S * blocks * N), 0.02f / (float)qmax, 0.05f / (float)qmax);
  std::vector<int> q(n);
  for (int& v : q) v = rng.integer(int4 ? -8 : -127, int4 ? 7 : 127);
  if (!int4) {
    w.type = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    w.bytes.resize(n);
    for (size_t i = 0; i < n; ++i) w.bytes[i] = (uint8_t)(int8_t)q[i];
    return w;
  }
  if (m.int4_onnx) {  // element i: nibble i % 2 (low first) of byte i / 2, two's complement
    w.type = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT4;
    w.bytes.assign((n + 1) / 2, 0);
    for (size_t i = 0; i < n; ++i) w.bytes[i / 2] |= (uint8_t)((q[i] & 0x0F) << (4 * (i % 2)));
    return w;
  }
  // packed: a row holds ceil(N / 2) bytes, column j in nibble j % 2 (low first), stored as q + 8
  w.type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  w.cuda_mode = QLE_CUDA_I4_PACKED;
  const long width = (N + 1) / 2;
  w.bytes.assign((size_t)(S * K * width), 0);
  for (long row = 0; row < S * K; ++row)
    for (long j = 0; j < N; ++j)
      w.bytes[(size_t)(row * width + j / 2)] |= (uint8_t)((q[(size_t)(row * N + j)] + 8) << (4 * (j % 2)));
  return w;
}

const float* scale_or_null(const Matrix& w) { return w.scale.empty() ? nullptr : w.scale.data(); }

// x of an op whose x enters a product: float32, or float16 in fp16 nodes (the CPU kernels read the
// float16 values converted to float32, as the ops do).
struct ProductInput {
  std::vector<float> f32;
  std::vector<uint16_t> f16;
};

ProductInput make_x(Rng& rng, const Mode& m, size_t n) {
  ProductInput x{rng.floats(n, -1.0f, 1.0f), {}};
  if (m.q == QleQMode::F16) {
    x.f16.resize(n);
    for (size_t i = 0; i < n; ++i) {
      x.f16[i] = f16_bits(x.f32[i]);
      x.f32[i] = qle_f16_bits_to_f32(x.f16[i]);
    }
  }
  return x;
}

void check_pack(const char* error) {
  if (error != nullptr) throw std::runtime_error(std::string("CPU pack: ") + error);
}

// --- device memory ------------------------------------------------------------------------------

void cuda_check(int err, const char* what) {
  if (err != 0) throw std::runtime_error(std::string(what) + ": " + qle_cuda_error_string(err));
}

// Device buffers of one call, freed together.
class Device {
 public:
  Device() = default;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  ~Device() {
    for (void* p : owned_) cudaFree(p);
  }
  template <typename T>
  T* put(const std::vector<T>& host) {
    T* d = alloc<T>(host.size());
    if (!host.empty())
      cuda_check(cudaMemcpy(d, host.data(), sizeof(T) * host.size(), cudaMemcpyHostToDevice), "cudaMemcpy");
    return d;
  }
  // n elements, every byte 0xFF (a float NaN): an output the kernel leaves unwritten cannot match.
  template <typename T>
  T* out(size_t n) {
    T* d = alloc<T>(n);
    if (n != 0) cuda_check(cudaMemset(d, 0xFF, sizeof(T) * n), "cudaMemset");
    return d;
  }
  template <typename T>
  static std::vector<T> get(const T* d, size_t n) {
    std::vector<T> host(n);
    if (n != 0) cuda_check(cudaMemcpy(host.data(), d, sizeof(T) * n, cudaMemcpyDeviceToHost), "cudaMemcpy");
    return host;
  }

 private:
  template <typename T>
  T* alloc(size_t n) {
    if (n == 0) return nullptr;
    void* p = nullptr;
    cuda_check(cudaMalloc(&p, sizeof(T) * n), "cudaMalloc");
    owned_.push_back(p);
    return static_cast<T*>(p);
  }
  std::vector<void*> owned_;
};

// Runs a launcher and waits for its kernels: a launch error or a fault inside a kernel fails the case.
void launch(int err) {
  cuda_check(err, "launch");
  cuda_check(cudaDeviceSynchronize(), "kernel");
}

// A matrix input and its scales on the device, as the CUDA op passes them.
struct DevMatrix {
  const void* w;
  const float* scale;
};

DevMatrix put_matrix(Device& dev, const Matrix& m) {
  return DevMatrix{dev.put(m.bytes), m.scale.empty() ? nullptr : dev.put(m.scale)};
}

const void* put_x(Device& dev, const Mode& m, const ProductInput& x) {
  if (m.q == QleQMode::F16) return dev.put(x.f16);
  return dev.put(x.f32);
}

// --- comparison ---------------------------------------------------------------------------------

// The outputs of one side: named float tensors, and the int64 ones (PR-LSTM's count).
struct Outputs {
  std::vector<std::pair<std::string, std::vector<float>>> f;
  std::vector<std::pair<std::string, std::vector<int64_t>>> i;
  void add(const std::string& name, std::vector<float> v) { f.emplace_back(name, std::move(v)); }
  void add(const std::string& name, std::vector<int64_t> v) { i.emplace_back(name, std::move(v)); }
};

struct Verdict {
  bool ok = true;
  double diff = 0.0, allowed = 0.0;  // of the worst tensor
  std::string tensor, note;
};

// NaN must match NaN (PR-LSTM past its stream limit); an int64 tensor must be equal.
Verdict compare(const Outputs& cpu, const Outputs& gpu, double tol) {
  if (cpu.f.size() != gpu.f.size() || cpu.i.size() != gpu.i.size())
    throw std::logic_error("the two sides returned different outputs");
  Verdict v;
  double worst = -1.0;
  for (size_t t = 0; t < cpu.f.size(); ++t) {
    const std::vector<float>& a = cpu.f[t].second;
    const std::vector<float>& b = gpu.f[t].second;
    double scale = 1.0, diff = 0.0;
    bool nan_mismatch = false;
    for (float x : a)
      if (!isnan(x) && fabs(x) > scale) scale = fabs(x);
    for (size_t k = 0; k < a.size(); ++k) {
      if (isnan(a[k]) || isnan(b[k])) {
        nan_mismatch |= isnan(a[k]) != isnan(b[k]);
        continue;
      }
      diff = fmax(diff, fabs((double)a[k] - (double)b[k]));
    }
    const double allowed = tol * scale;
    const double ratio = diff == 0.0 ? 0.0 : (allowed == 0.0 ? INFINITY : diff / allowed);
    if (nan_mismatch) {
      v.ok = false;
      v.note += " NaN mismatch in " + cpu.f[t].first;
    }
    if (ratio > 1.0) v.ok = false;
    if (ratio > worst) {
      worst = ratio;
      v.diff = diff, v.allowed = allowed, v.tensor = cpu.f[t].first;
    }
  }
  for (size_t t = 0; t < cpu.i.size(); ++t)
    if (cpu.i[t].second != gpu.i[t].second) {
      v.ok = false;
      v.note += " " + cpu.i[t].first + " differs";
    }
  return v;
}

// --- cases --------------------------------------------------------------------------------------

// One case: its name, its tolerance and why, and its two sides (each runs both calls).
struct Case {
  std::string name;
  double tol;
  const char* why;
  std::function<Outputs()> cpu, gpu;
};

std::string shape_name(const char* op, const Mode& m, const std::vector<std::pair<const char*, long>>& dims) {
  std::string s = std::string(op) + " " + m.name;
  for (const auto& d : dims)
    if (strcmp(d.first, "bs") != 0 || m.q == QleQMode::I4)  // the int4 block size only
      s += " " + std::string(d.first) + "=" + std::to_string(d.second);
  return s;
}

std::string call_name(const char* tensor, int call) { return std::string(tensor) + std::to_string(call + 1); }

// QL-LSTM --------------------------------------------------------------------------------------------

struct QlShape {
  long B, T, D, H, block;  // T = 1 for the cell op
};

struct QlInputs {
  Mode mode;
  QlShape s;
  bool seq;
  ProductInput x[2];  // one per call, [B, T, D]
  Matrix wx, wh;      // [D, H], [H, H]
  std::vector<float> h, c, bias, gs, gb, alpha;
};

// The QL-LSTM CPU op's kernel calls (qllstm/qle_qllstm_ops.cc): the cell over every row; the
// sequence's input projection of every token, then its recurrence; a T = 0 sequence returns the state.
void qllstm_cpu(const QlInputs& in, const QleQllstmWeights& w, const std::vector<float>& x,
                const std::vector<float>& h, const std::vector<float>& c, std::vector<float>* Y,
                std::vector<float>* h_out, std::vector<float>* c_out) {
  const QlShape& s = in.s;
  if (in.seq && s.T == 0) {
    *h_out = h;
    *c_out = c;
    return;
  }
  const QleQllstmArgs a{s.B,           s.T,          s.D,          s.H,         &w,
                        x.data(),      h.data(),     c.data(),     in.bias.data(),
                        in.gs.data(),  in.gb.data(), in.alpha[0],  in.seq ? Y->data() : nullptr,
                        h_out->data(), c_out->data()};
  if (!in.seq) {
    qle_qllstm_cell_rows(kReference, a, 0, s.B);
    return;
  }
  qle_qllstm_project_rows(kReference, a, 0, s.B * s.T);
  qle_qllstm_recur_rows(kReference, a, 0, s.B);
}

Outputs qllstm_cpu_calls(const QlInputs& in) {
  const long B = in.s.B, T = in.s.T, D = in.s.D, H = in.s.H;
  QleQllstmWeights w;
  check_pack(qle_qllstm_pack(in.mode.q, in.s.block, in.wx.bytes.data(), in.wx.type, in.wh.bytes.data(), in.wh.type,
                             scale_or_null(in.wx), scale_or_null(in.wh), D, H, &w));
  Outputs o;
  std::vector<float> h = in.h, c = in.c;
  for (int call = 0; call < 2; ++call) {
    std::vector<float> Y((size_t)(B * T * H)), h_out((size_t)(B * H)), c_out((size_t)(B * H));
    qllstm_cpu(in, w, in.x[call].f32, h, c, &Y, &h_out, &c_out);
    if (in.seq) o.add(call_name("Y", call), Y);
    o.add(call_name("h", call), h_out);
    o.add(call_name("c", call), c_out);
    h = h_out, c = c_out;
  }
  return o;
}

Outputs qllstm_gpu_calls(const QlInputs& in) {
  const long B = in.s.B, T = in.s.T, D = in.s.D, H = in.s.H;
  Device dev;
  const DevMatrix wx = put_matrix(dev, in.wx), wh = put_matrix(dev, in.wh);
  const QleCudaWeights w{in.mode.cuda, in.s.block, wx.w, wh.w, wx.scale, wh.scale, in.wx.cuda_mode, in.wh.cuda_mode};
  const float *bias = dev.put(in.bias), *gs = dev.put(in.gs), *gb = dev.put(in.gb), *alpha = dev.put(in.alpha);
  Outputs o;
  std::vector<float> h = in.h, c = in.c;
  for (int call = 0; call < 2; ++call) {
    const void* x = put_x(dev, in.mode, in.x[call]);
    const float *hd = dev.put(h), *cd = dev.put(c);
    float* Y = dev.out<float>((size_t)(B * T * H));
    float *h_out = dev.out<float>((size_t)(B * H)), *c_out = dev.out<float>((size_t)(B * H));
    if (in.seq)
      launch(qle_cuda_sequence(nullptr, &w, B, T, D, H, x, hd, cd, bias, gs, gb, alpha, Y, h_out, c_out));
    else
      launch(qle_cuda_cell(nullptr, &w, B, D, H, x, hd, cd, bias, gs, gb, alpha, h_out, c_out));
    if (in.seq) o.add(call_name("Y", call), Device::get(Y, (size_t)(B * T * H)));
    h = Device::get(h_out, (size_t)(B * H));
    c = Device::get(c_out, (size_t)(B * H));
    o.add(call_name("h", call), h);
    o.add(call_name("c", call), c);
  }
  return o;
}

void add_qllstm(std::vector<Case>* cases, const Mode& m, const QlShape& s, bool seq, uint64_t seed) {
  auto in = std::make_shared<QlInputs>();
  Rng rng{seed};
  in->mode = m, in->s = s, in->seq = seq;
  for (ProductInput& x : in->x) x = make_x(rng, m, (size_t)(s.B * s.T * s.D));
  in->wx = make_matrix(rng, m, 1, s.D, s.H, s.block, 0.5f);
  in->wh = make_matrix(rng, m, 1, s.H, s.H, s.block, 0.5f);
  in->h = rng.floats((size_t)(s.B * s.H), -1.0f, 1.0f);
  in->c = rng.floats((size_t)(s.B * s.H), -1.0f, 1.0f);
  in->bias = rng.floats((size_t)s.H, -0.5f, 0.5f);
  in->gs = rng.floats((size_t)(4 * s.H), 0.5f, 1.5f);
  in->gb = rng.floats((size_t)(4 * s.H), -0.5f, 0.5f);
  in->alpha = {0.05f};
  const char* op = seq ? "QLLSTMSequence" : "QLLSTMCell";
  Case k{shape_name(op, m, {{"B", s.B}, {"T", s.T}, {"D", s.D}, {"H", s.H}, {"bs", s.block}}),
         0.0, nullptr, [in] { return qllstm_cpu_calls(*in); }, [in] { return qllstm_gpu_calls(*in); }};
  k.tol = bias_first_tol(m.q, &k.why);
  cases->push_back(k);
}

// PR-LSTM ----------------------------------------------------------------------------------------------

struct PrShape {
  long B, T, D, H, K, R, block;  // T = 1 for the step op
  std::vector<int64_t> count;    // [B]: the first call's counts
};

struct PrInputs {
  Mode mode;
  PrShape s;
  ProductInput x[2];                  // [B, T, D]
  Matrix leaf, merge, unary;          // [D, 3H], [2H, 5H], [R, H, 4H]
  std::vector<float> b_leaf, b_merge, b_unary;
  std::vector<float> bh, bc, ph, pc;  // [B, K, H]
};

struct PrState {
  std::vector<float> bh, bc, ph, pc;
  std::vector<int64_t> count;
};

void add_pr_outputs(Outputs* o, int call, const std::vector<float>& Y, const PrState& st) {
  o->add(call_name("Y", call), Y);
  o->add(call_name("block_h", call), st.bh);
  o->add(call_name("block_c", call), st.bc);
  o->add(call_name("prefix_h", call), st.ph);
  o->add(call_name("prefix_c", call), st.pc);
  o->add(call_name("count", call), st.count);
}

Outputs prlstm_cpu_calls(const PrInputs& in) {
  const PrShape& s = in.s;
  const ONNXTensorElementDataType types[3] = {in.leaf.type, in.merge.type, in.unary.type};
  QlePrlstmWeights w;
  check_pack(qle_prlstm_pack(in.mode.q, s.block, in.leaf.bytes.data(), in.merge.bytes.data(), in.unary.bytes.data(),
                             types, scale_or_null(in.leaf), scale_or_null(in.merge), scale_or_null(in.unary), s.D,
                             s.H, s.R, &w));
  Outputs o;
  PrState st{in.bh, in.bc, in.ph, in.pc, s.count};
  const size_t KH = (size_t)(s.B * s.K * s.H);
  for (int call = 0; call < 2; ++call) {
    std::vector<float> Y((size_t)(s.B * s.T * s.H));
    PrState next{std::vector<float>(KH), std::vector<float>(KH), std::vector<float>(KH), std::vector<float>(KH),
                 std::vector<int64_t>((size_t)s.B)};
    const QlePrlstmArgs a{s.B, s.T, s.D, s.H, s.K, s.R, in.x[call].f32.data(), st.bh.data(), st.bc.data(),
                          st.ph.data(), st.pc.data(), st.count.data(), &w, in.b_leaf.data(), in.b_merge.data(),
                          in.b_unary.data(), Y.data(), next.bh.data(), next.bc.data(), next.ph.data(),
                          next.pc.data(), next.count.data()};
    qle_prlstm_rows(kReference, a, 0, s.B);
    add_pr_outputs(&o, call, Y, next);
    st = next;
  }
  return o;
}

Outputs prlstm_gpu_calls(const PrInputs& in) {
  const PrShape& s = in.s;
  Device dev;
  const DevMatrix leaf = put_matrix(dev, in.leaf), merge = put_matrix(dev, in.merge), unary = put_matrix(dev, in.unary);
  const float *b_leaf = dev.put(in.b_leaf), *b_merge = dev.put(in.b_merge), *b_unary = dev.put(in.b_unary);
  Outputs o;
  PrState st{in.bh, in.bc, in.ph, in.pc, s.count};
  const size_t KH = (size_t)(s.B * s.K * s.H), NY = (size_t)(s.B * s.T * s.H);
  for (int call = 0; call < 2; ++call) {
    QleCudaPrlstm a{};
    a.mode = in.mode.cuda, a.block = s.block;
    a.B = s.B, a.T = s.T, a.D = s.D, a.H = s.H, a.K = s.K, a.R = s.R;
    a.x = put_x(dev, in.mode, in.x[call]);
    a.block_h = dev.put(st.bh), a.block_c = dev.put(st.bc), a.prefix_h = dev.put(st.ph), a.prefix_c = dev.put(st.pc);
    a.count_host = st.count.data();
    a.W_leaf = leaf.w, a.W_merge = merge.w, a.W_unary = unary.w;
    a.leaf_mode = in.leaf.cuda_mode, a.merge_mode = in.merge.cuda_mode, a.unary_mode = in.unary.cuda_mode;
    a.s_leaf = leaf.scale, a.s_merge = merge.scale, a.s_unary = unary.scale;
    a.b_leaf = b_leaf, a.b_merge = b_merge, a.b_unary = b_unary;
    a.Y = dev.out<float>(NY);
    a.block_h_out = dev.out<float>(KH), a.block_c_out = dev.out<float>(KH);
    a.prefix_h_out = dev.out<float>(KH), a.prefix_c_out = dev.out<float>(KH);
    a.count_out = dev.out<int64_t>((size_t)s.B);
    launch(qle_cuda_prlstm(nullptr, &a));
    const PrState next{Device::get(a.block_h_out, KH), Device::get(a.block_c_out, KH), Device::get(a.prefix_h_out, KH),
                       Device::get(a.prefix_c_out, KH), Device::get(a.count_out, (size_t)s.B)};
    add_pr_outputs(&o, call, Device::get(a.Y, NY), next);
    st = next;
  }
  return o;
}

void add_prlstm(std::vector<Case>* cases, const Mode& m, const PrShape& s, bool seq, uint64_t seed) {
  auto in = std::make_shared<PrInputs>();
  Rng rng{seed};
  in->mode = m, in->s = s;
  const long H = s.H;
  for (ProductInput& x : in->x) x = make_x(rng, m, (size_t)(s.B * s.T * s.D));
  in->leaf = make_matrix(rng, m, 1, s.D, 3 * H, s.block, 0.5f);
  in->merge = make_matrix(rng, m, 1, 2 * H, 5 * H, s.block, 0.3f);
  in->unary = make_matrix(rng, m, s.R, H, 4 * H, s.block, 0.3f);
  in->b_leaf = rng.floats((size_t)(3 * H), -0.5f, 0.5f);
  in->b_merge = rng.floats((size_t)(5 * H), -0.5f, 0.5f);
  in->b_unary = rng.floats((size_t)(s.R * 4 * H), -0.5f, 0.5f);
  const size_t KH = (size_t)(s.B * s.K * H);
  in->bh = rng.floats(KH, -1.0f, 1.0f), in->bc = rng.floats(KH, -1.0f, 1.0f);
  in->ph = rng.floats(KH, -1.0f, 1.0f), in->pc = rng.floats(KH, -1.0f, 1.0f);
  const char* op = seq ? "PRLSTMSequence" : "PRLSTMStep";
  std::string name =
      shape_name(op, m, {{"B", s.B}, {"T", s.T}, {"D", s.D}, {"H", H}, {"K", s.K}, {"R", s.R}, {"bs", s.block}});
  name += " count=";
  for (size_t r = 0; r < s.count.size(); ++r) name += (r ? "," : "") + std::to_string(s.count[r]);
  Case k{name, 0.0, nullptr, [in] { return prlstm_cpu_calls(*in); }, [in] { return prlstm_gpu_calls(*in); }};
  k.tol = bias_first_tol(m.q, &k.why);
  cases->push_back(k);
}

// sLSTM ------------------------------------------------------------------------------------------------

struct SShape {
  long B, T, NH, DH, block;  // T = 1 for the cell op
};

struct SInputs {
  Mode mode;
  SShape s;
  bool seq;
  std::vector<float> x[2];  // [B, T, 4H]: float32 in every mode (x enters no product)
  Matrix R;                 // [4, NH, DH, DH]
  std::vector<float> b;     // [4H]
};

struct SState {
  std::vector<float> y, c, n, m;
};

void add_s_outputs(Outputs* o, int call, const std::vector<float>* Y, const SState& st) {
  if (Y != nullptr) o->add(call_name("Y", call), *Y);
  o->add(call_name("y", call), st.y);
  o->add(call_name("c", call), st.c);
  o->add(call_name("n", call), st.n);
  o->add(call_name("m", call), st.m);
}

// The first call starts from the zero state (n = 0: the stabiliser's first-step branch), the second
// from the state the first returned.
SState zero_s_state(const SShape& s) {
  const size_t n = (size_t)(s.B * s.NH * s.DH);
  return SState{std::vector<float>(n), std::vector<float>(n), std::vector<float>(n), std::vector<float>(n)};
}

Outputs slstm_cpu_calls(const SInputs& in) {
  const SShape& s = in.s;
  std::vector<QleQMatrix> R;
  check_pack(qle_slstm_pack(in.mode.q, s.block, in.R.bytes.data(), in.R.type, scale_or_null(in.R), s.NH, s.DH, &R));
  Outputs o;
  SState st = zero_s_state(s);
  const size_t NY = (size_t)(s.B * s.T * s.NH * s.DH);
  for (int call = 0; call < 2; ++call) {
    std::vector<float> Y(NY);
    SState next = zero_s_state(s);
    const QleSlstmArgs a{s.B, s.T, s.NH, s.DH, in.x[call].data(), st.y.data(), st.c.data(), st.n.data(),
                         st.m.data(), R.data(), in.b.data(), in.seq ? Y.data() : nullptr, next.y.data(),
                         next.c.data(), next.n.data(), next.m.data()};
    qle_slstm_rows(kReference, a, 0, s.B);
    add_s_outputs(&o, call, in.seq ? &Y : nullptr, next);
    st = next;
  }
  return o;
}

Outputs slstm_gpu_calls(const SInputs& in) {
  const SShape& s = in.s;
  Device dev;
  const DevMatrix R = put_matrix(dev, in.R);
  const float* b = dev.put(in.b);
  Outputs o;
  SState st = zero_s_state(s);
  const size_t NH = (size_t)(s.B * s.NH * s.DH), NY = (size_t)s.T * NH;
  for (int call = 0; call < 2; ++call) {
    QleCudaSlstm a{};
    a.mode = in.R.cuda_mode, a.block = s.block;
    a.B = s.B, a.T = s.T, a.NH = s.NH, a.DH = s.DH;
    a.x = dev.put(in.x[call]);
    a.y = dev.put(st.y), a.c = dev.put(st.c), a.n = dev.put(st.n), a.m = dev.put(st.m);
    a.R = R.w, a.R_scale = R.scale, a.b = b;
    a.Y = in.seq ? dev.out<float>(NY) : nullptr;
    a.y_out = dev.out<float>(NH), a.c_out = dev.out<float>(NH);
    a.n_out = dev.out<float>(NH), a.m_out = dev.out<float>(NH);
    launch(qle_cuda_slstm(nullptr, &a));
    const SState next{Device::get(a.y_out, NH), Device::get(a.c_out, NH), Device::get(a.n_out, NH),
                      Device::get(a.m_out, NH)};
    const std::vector<float> Y = in.seq ? Device::get(a.Y, NY) : std::vector<float>();
    add_s_outputs(&o, call, in.seq ? &Y : nullptr, next);
    st = next;
  }
  return o;
}

void add_slstm(std::vector<Case>* cases, const Mode& m, const SShape& s, bool seq, uint64_t seed) {
  auto in = std::make_shared<SInputs>();
  Rng rng{seed};
  in->mode = m, in->s = s, in->seq = seq;
  const long H = s.NH * s.DH;
  for (std::vector<float>& x : in->x) x = rng.floats((size_t)(s.B * s.T * 4 * H), -1.0f, 1.0f);
  in->R = make_matrix(rng, m, 4 * s.NH, s.DH, s.DH, s.block, 0.5f);
  in->b = rng.floats((size_t)(4 * H), -0.5f, 0.5f);
  // The recurrent products start from 0 on both sides (x and b are added to the finished sum, as
  // the GPU does), so every mode is exact.
  const char* op = seq ? "sLSTMSequence" : "sLSTMCell";
  Case k{shape_name(op, m, {{"B", s.B}, {"T", s.T}, {"NH", s.NH}, {"DH", s.DH}, {"bs", s.block}}),
         kExact, "exact (same operations, same order)", [in] { return slstm_cpu_calls(*in); },
         [in] { return slstm_gpu_calls(*in); }};
  cases->push_back(k);
}

// mLSTM ------------------------------------------------------------------------------------------------

struct MShape {
  long B, T, NH, DK, DV;  // T = 1 for the cell op
};

struct MInputs {
  MShape s;
  bool seq;
  std::vector<float> q[2], k[2], v[2], i[2], f[2];  // per call
  std::vector<float> C, n, m;                      // the first call's state
};

struct MState {
  std::vector<float> C, n, m;
};

MState m_state(const MShape& s) {
  return MState{std::vector<float>((size_t)(s.B * s.NH * s.DK * s.DV)), std::vector<float>((size_t)(s.B * s.NH * s.DK)),
                std::vector<float>((size_t)(s.B * s.NH))};
}

// The arguments of one call (host or device pointers alike), scalars as the op reads them.
QleMlstmArgs m_args(const MInputs& in, const float* q, const float* k, const float* v, const float* i,
                    const float* f, const float* C, const float* n, const float* m, float* Hout, float* C_out,
                    float* n_out, float* m_out) {
  const MShape& s = in.s;
  return QleMlstmArgs{s.B, s.T, s.NH, s.DK, s.DV, q, k, v, i, f, C, n, m, 1.0f / sqrtf((float)s.DK), 0.7f, 1e-6f,
                      Hout, C_out, n_out, m_out};
}

void add_m_outputs(Outputs* o, int call, const std::vector<float>& Hout, const MState& st) {
  o->add(call_name("H", call), Hout);
  o->add(call_name("C", call), st.C);
  o->add(call_name("n", call), st.n);
  o->add(call_name("m", call), st.m);
}

Outputs mlstm_cpu_calls(const MInputs& in) {
  const MShape& s = in.s;
  Outputs o;
  MState st{in.C, in.n, in.m};
  for (int call = 0; call < 2; ++call) {
    std::vector<float> Hout((size_t)(s.B * s.T * s.NH * s.DV));
    MState next = m_state(s);
    const QleMlstmArgs a = m_args(in, in.q[call].data(), in.k[call].data(), in.v[call].data(), in.i[call].data(),
                                  in.f[call].data(), st.C.data(), st.n.data(), st.m.data(), Hout.data(),
                                  next.C.data(), next.n.data(), next.m.data());
    qle_mlstm_streams(kReference, a, 0, s.B * s.NH);
    add_m_outputs(&o, call, Hout, next);
    st = next;
  }
  return o;
}

Outputs mlstm_gpu_calls(const MInputs& in) {
  const MShape& s = in.s;
  Device dev;
  Outputs o;
  MState st{in.C, in.n, in.m};
  const size_t NHout = (size_t)(s.B * s.T * s.NH * s.DV), NC = st.C.size(), Nn = st.n.size(), Nm = st.m.size();
  for (int call = 0; call < 2; ++call) {
    float *Hout = dev.out<float>(NHout), *C_out = dev.out<float>(NC);
    float *n_out = dev.out<float>(Nn), *m_out = dev.out<float>(Nm);
    const QleMlstmArgs a = m_args(in, dev.put(in.q[call]), dev.put(in.k[call]), dev.put(in.v[call]),
                                  dev.put(in.i[call]), dev.put(in.f[call]), dev.put(st.C), dev.put(st.n),
                                  dev.put(st.m), Hout, C_out, n_out, m_out);
    launch(qle_cuda_mlstm(nullptr, &a));
    const MState next{Device::get(C_out, NC), Device::get(n_out, Nn), Device::get(m_out, Nm)};
    add_m_outputs(&o, call, Device::get(Hout, NHout), next);
    st = next;
  }
  return o;
}

void add_mlstm(std::vector<Case>* cases, const MShape& s, bool seq, uint64_t seed) {
  auto in = std::make_shared<MInputs>();
  Rng rng{seed};
  in->s = s, in->seq = seq;
  const size_t g = (size_t)(s.B * s.T * s.NH);
  for (int call = 0; call < 2; ++call) {
    in->q[call] = rng.floats(g * (size_t)s.DK, -1.0f, 1.0f);
    in->k[call] = rng.floats(g * (size_t)s.DK, -1.0f, 1.0f);
    in->v[call] = rng.floats(g * (size_t)s.DV, -1.0f, 1.0f);
    in->i[call] = rng.floats(g, -2.0f, 2.0f);
    in->f[call] = rng.floats(g, -1.0f, 3.0f);
  }
  in->C = rng.floats((size_t)(s.B * s.NH * s.DK * s.DV), -0.5f, 0.5f);
  in->n = rng.floats((size_t)(s.B * s.NH * s.DK), -0.5f, 0.5f);
  in->m = rng.floats((size_t)(s.B * s.NH), -1.0f, 1.0f);
  // No weights; the GPU sums over DK in the CPU kernel's order with the shared gate maths: exact.
  const char* op = seq ? "mLSTMSequence" : "mLSTMCell";
  Case k{shape_name(op, kFp32, {{"B", s.B}, {"T", s.T}, {"NH", s.NH}, {"DK", s.DK}, {"DV", s.DV}}),
         kExact, "exact (same operations, same order)", [in] { return mlstm_cpu_calls(*in); },
         [in] { return mlstm_gpu_calls(*in); }};
  cases->push_back(k);
}

// xLSTMLarge block ---------------------------------------------------------------------------------------

struct LbShape {
  long B, T, E, NH, DK, DV, U, block;  // T = 1 for the step op
  float cap;                           // gate_soft_cap (0: no cap)
};

// The five matrices in the op's order: W_qkvo [E, 2QK + 2V], W_if [E, 2NH], W_out [V, E], W_up [E, 2U],
// W_down [U, E].
long lb_K(const LbShape& s, int j) { return j == 2 ? s.NH * s.DV : j == 4 ? s.U : s.E; }
long lb_N(const LbShape& s, int j) {
  return j == 0 ? 2 * s.NH * (s.DK + s.DV) : j == 1 ? 2 * s.NH : j == 3 ? 2 * s.U : s.E;
}

struct LbInputs {
  Mode mode;
  LbShape s;
  bool seq;
  std::vector<float> x[2];  // [B, T, E]: float32 in every mode (x enters the norm, not a product)
  Matrix W[5];
  std::vector<float> norm_mlstm_w, norm_mlstm_b, b_qkvo, b_if, head_norm_w, head_norm_b, b_out, norm_ffn_w,
      norm_ffn_b, b_up, b_down;
  std::vector<float> C, n, m;  // the first call's state
  float q_scale, eps, norm_eps;
};

MState lb_state(const LbShape& s) { return m_state(MShape{s.B, s.T, s.NH, s.DK, s.DV}); }

void add_lb_outputs(Outputs* o, bool seq, int call, const std::vector<float>& Y, const MState& st) {
  o->add(call_name(seq ? "Y" : "y", call), Y);
  o->add(call_name("C", call), st.C);
  o->add(call_name("n", call), st.n);
  o->add(call_name("m", call), st.m);
}

// The CPU op's kernel call (xlstm/qle_large_block_ops.cc), with the matrices packed as it packs constant ones
// (float32 in column panels).
Outputs large_block_cpu_calls(const LbInputs& in) {
  const LbShape& s = in.s;
  QleBlockMatrix W[5];
  for (int j = 0; j < 5; ++j) {
    check_pack(qle_qmatrix_pack(in.mode.q, s.block, in.W[j].bytes.data(), in.W[j].type, 0, scale_or_null(in.W[j]),
                                lb_K(s, j), lb_N(s, j), &W[j].w));
    if (in.mode.q == QleQMode::F32) qle_block_panels(&W[j]);
  }
  Outputs o;
  MState st{in.C, in.n, in.m};
  for (int call = 0; call < 2; ++call) {
    std::vector<float> Y((size_t)(s.B * s.T * s.E));
    MState next = lb_state(s);
    QleLargeBlockArgs a{};
    a.B = s.B, a.T = s.T, a.E = s.E, a.NH = s.NH, a.DK = s.DK, a.DV = s.DV, a.U = s.U;
    a.x = in.x[call].data(), a.C = st.C.data(), a.n = st.n.data(), a.m = st.m.data();
    a.norm_mlstm_w = in.norm_mlstm_w.data(), a.norm_mlstm_b = in.norm_mlstm_b.data();
    a.W_qkvo = &W[0], a.W_if = &W[1], a.W_out = &W[2], a.W_up = &W[3], a.W_down = &W[4];
    a.b_qkvo = in.b_qkvo.data(), a.b_if = in.b_if.data();
    a.head_norm_w = in.head_norm_w.data(), a.head_norm_b = in.head_norm_b.data(), a.b_out = in.b_out.data();
    a.norm_ffn_w = in.norm_ffn_w.data(), a.norm_ffn_b = in.norm_ffn_b.data();
    a.b_up = in.b_up.data(), a.b_down = in.b_down.data();
    a.gate_soft_cap = s.cap, a.q_scale = in.q_scale, a.eps = in.eps, a.norm_eps = in.norm_eps;
    a.Y = Y.data(), a.C_out = next.C.data(), a.n_out = next.n.data(), a.m_out = next.m.data();
    qle_large_block(kReference, a);
    add_lb_outputs(&o, in.seq, call, Y, next);
    st = next;
  }
  return o;
}

Outputs large_block_gpu_calls(const LbInputs& in) {
  const LbShape& s = in.s;
  Device dev;
  QleCudaBlockMatrix W[5];
  for (int j = 0; j < 5; ++j) {
    const DevMatrix d = put_matrix(dev, in.W[j]);
    W[j] = QleCudaBlockMatrix{in.W[j].cuda_mode, s.block, d.w, d.scale, lb_K(s, j), lb_N(s, j)};
  }
  QleCudaLargeBlock a{};
  a.B = s.B, a.T = s.T, a.E = s.E, a.NH = s.NH, a.DK = s.DK, a.DV = s.DV, a.U = s.U;
  a.norm_mlstm_w = dev.put(in.norm_mlstm_w), a.norm_mlstm_b = dev.put(in.norm_mlstm_b);
  a.W_qkvo = W[0], a.W_if = W[1], a.W_out = W[2], a.W_up = W[3], a.W_down = W[4];
  a.b_qkvo = dev.put(in.b_qkvo), a.b_if = dev.put(in.b_if);
  a.head_norm_w = dev.put(in.head_norm_w), a.head_norm_b = dev.put(in.head_norm_b), a.b_out = dev.put(in.b_out);
  a.norm_ffn_w = dev.put(in.norm_ffn_w), a.norm_ffn_b = dev.put(in.norm_ffn_b);
  a.b_up = dev.put(in.b_up), a.b_down = dev.put(in.b_down);
  a.gate_soft_cap = s.cap, a.q_scale = in.q_scale, a.eps = in.eps, a.norm_eps = in.norm_eps;
  Outputs o;
  MState st{in.C, in.n, in.m};
  const size_t NY = (size_t)(s.B * s.T * s.E), NC = st.C.size(), Nn = st.n.size(), Nm = st.m.size();
  for (int call = 0; call < 2; ++call) {
    a.x = dev.put(in.x[call]), a.C = dev.put(st.C), a.n = dev.put(st.n), a.m = dev.put(st.m);
    a.Y = dev.out<float>(NY), a.C_out = dev.out<float>(NC), a.n_out = dev.out<float>(Nn);
    a.m_out = dev.out<float>(Nm);
    launch(qle_cuda_large_block(nullptr, &a));
    const MState next{Device::get(a.C_out, NC), Device::get(a.n_out, Nn), Device::get(a.m_out, Nm)};
    add_lb_outputs(&o, in.seq, call, Device::get(a.Y, NY), next);
    st = next;
  }
  return o;
}

void add_large_block(std::vector<Case>* cases, const Mode& m, const LbShape& s, bool seq, uint64_t seed) {
  auto in = std::make_shared<LbInputs>();
  Rng rng{seed};
  in->mode = m, in->s = s, in->seq = seq;
  const long E = s.E, V = s.NH * s.DV;
  for (std::vector<float>& x : in->x) x = rng.floats((size_t)(s.B * s.T * E), -1.0f, 1.0f);
  for (int j = 0; j < 5; ++j) in->W[j] = make_matrix(rng, m, 1, lb_K(s, j), lb_N(s, j), s.block, 0.3f);
  const auto around = [&rng](long n, float centre, float half) {
    return rng.floats((size_t)n, centre - half, centre + half);
  };
  in->norm_mlstm_w = around(E, 1.0f, 0.2f), in->norm_mlstm_b = around(E, 0.0f, 0.2f);
  in->b_qkvo = around(lb_N(s, 0), 0.0f, 0.2f), in->b_if = around(2 * s.NH, 0.0f, 2.0f);
  in->head_norm_w = around(V, 1.0f, 0.2f), in->head_norm_b = around(V, 0.0f, 0.2f);
  in->b_out = around(E, 0.0f, 0.2f), in->norm_ffn_w = around(E, 1.0f, 0.2f), in->norm_ffn_b = around(E, 0.0f, 0.2f);
  in->b_up = around(2 * s.U, 0.0f, 0.2f), in->b_down = around(E, 0.0f, 0.2f);
  in->C = rng.floats((size_t)(s.B * s.NH * s.DK * s.DV), -0.5f, 0.5f);
  in->n = rng.floats((size_t)(s.B * s.NH * s.DK), -0.5f, 0.5f);
  in->m = rng.floats((size_t)(s.B * s.NH), -1.0f, 1.0f);
  in->q_scale = 1.0f / sqrtf((float)s.DK), in->eps = 1e-6f, in->norm_eps = 1e-5f;
  // Exact in every mode: the CUDA block runs the CPU kernel's steps in its order with the same sources. Its
  // products accumulate as qle_qmatmul's scalar kernels do (dot_onto: onto the bias in fp32 and int4, the bias
  // added to the finished sum in fp16, int8 and int8-dynamic); the norms' sums run in index order in one thread
  // (qle_block_math.h); the element formulas are qle_block_math.h's, the recurrence is the mLSTM kernel's (exact
  // above).
  const char* op = seq ? "xLSTMLargeBlockSequence" : "xLSTMLargeBlock";
  std::string name = shape_name(op, m, {{"B", s.B}, {"T", s.T}, {"E", E}, {"NH", s.NH}, {"DK", s.DK}, {"DV", s.DV},
                                        {"U", s.U}, {"bs", s.block}});
  name += s.cap == 0.0f ? " no cap" : " cap=" + std::to_string((int)s.cap);
  Case k{name, kExact, "exact (same operations, same order)", [in] { return large_block_cpu_calls(*in); },
         [in] { return large_block_gpu_calls(*in); }};
  cases->push_back(k);
}

// The LM's mLSTM block ------------------------------------------------------------------------------------

struct MbShape {
  long B, T, E, NH, DH, KS, BS, block;  // I = NH DH, q/k/v heads of BS; T = 1 for the step op
};

// The three dense matrices in the op's order: W_up [E, 2I], W_if [3I, 2NH], W_down [I, E].
long mb_K(const MbShape& s, int j) { return j == 0 ? s.E : j == 1 ? 3 * s.NH * s.DH : s.NH * s.DH; }
long mb_N(const MbShape& s, int j) { return j == 0 ? 2 * s.NH * s.DH : j == 1 ? 2 * s.NH : s.E; }

struct MbInputs {
  Mode mode;
  MbShape s;
  bool seq;
  std::vector<float> x[2];  // [B, T, E]
  Matrix W[3], W_qkv;       // W_qkv [3, I / BS, BS, BS]
  std::vector<float> norm_w, norm_b, b_up, conv_w, conv_b, b_qkv, b_if, head_norm_w, head_norm_b, skip, b_down;
  std::vector<float> conv, C, n, m;  // the first call's state
  float k_scale, eps, norm_eps;
};

struct MbState {
  std::vector<float> conv, C, n, m;
};

MbState mb_state(const MbShape& s) {
  const MState st = m_state(MShape{s.B, s.T, s.NH, s.DH, s.DH});
  return MbState{std::vector<float>((size_t)(s.B * s.KS * s.NH * s.DH)), st.C, st.n, st.m};
}

void add_mb_outputs(Outputs* o, bool seq, int call, const std::vector<float>& Y, const MbState& st) {
  o->add(call_name(seq ? "Y" : "y", call), Y);
  o->add(call_name("conv", call), st.conv);
  o->add(call_name("C", call), st.C);
  o->add(call_name("n", call), st.n);
  o->add(call_name("m", call), st.m);
}

// The CPU op's kernel call (xlstm/qle_mlstm_block_ops.cc), with the matrices packed as it packs constant ones
// (float32 dense ones in column panels).
Outputs mlstm_block_cpu_calls(const MbInputs& in) {
  const MbShape& s = in.s;
  QleBlockMatrix W[3];
  for (int j = 0; j < 3; ++j) {
    check_pack(qle_qmatrix_pack(in.mode.q, s.block, in.W[j].bytes.data(), in.W[j].type, 0, scale_or_null(in.W[j]),
                                mb_K(s, j), mb_N(s, j), &W[j].w));
    if (in.mode.q == QleQMode::F32) qle_block_panels(&W[j]);
  }
  QleHeadwise qkv;
  check_pack(qle_headwise_pack(in.mode.q, s.block, in.W_qkv.bytes.data(), in.W_qkv.type, scale_or_null(in.W_qkv), 3,
                               s.NH * s.DH / s.BS, s.BS, s.BS, &qkv));
  Outputs o;
  MbState st{in.conv, in.C, in.n, in.m};
  for (int call = 0; call < 2; ++call) {
    std::vector<float> Y((size_t)(s.B * s.T * s.E));
    MbState next = mb_state(s);
    QleMlstmBlockArgs a{};
    a.B = s.B, a.T = s.T, a.E = s.E, a.NH = s.NH, a.DH = s.DH, a.KS = s.KS;
    a.x = in.x[call].data(), a.conv = st.conv.data(), a.C = st.C.data(), a.n = st.n.data(), a.m = st.m.data();
    a.norm_w = in.norm_w.data(), a.norm_b = in.norm_b.data();
    a.W_up = &W[0], a.W_if = &W[1], a.W_down = &W[2], a.W_qkv = &qkv;
    a.b_up = in.b_up.data(), a.conv_w = in.conv_w.data(), a.conv_b = in.conv_b.data(), a.b_qkv = in.b_qkv.data();
    a.b_if = in.b_if.data(), a.head_norm_w = in.head_norm_w.data(), a.head_norm_b = in.head_norm_b.data();
    a.skip = in.skip.data(), a.b_down = in.b_down.data();
    a.k_scale = in.k_scale, a.eps = in.eps, a.norm_eps = in.norm_eps;
    a.Y = Y.data(), a.conv_out = next.conv.data(), a.C_out = next.C.data(), a.n_out = next.n.data();
    a.m_out = next.m.data();
    qle_mlstm_block(kReference, a);
    add_mb_outputs(&o, in.seq, call, Y, next);
    st = next;
  }
  return o;
}

Outputs mlstm_block_gpu_calls(const MbInputs& in) {
  const MbShape& s = in.s;
  Device dev;
  QleCudaBlockMatrix W[3];
  for (int j = 0; j < 3; ++j) {
    const DevMatrix d = put_matrix(dev, in.W[j]);
    W[j] = QleCudaBlockMatrix{in.W[j].cuda_mode, s.block, d.w, d.scale, mb_K(s, j), mb_N(s, j)};
  }
  const DevMatrix qkv = put_matrix(dev, in.W_qkv);
  QleCudaMlstmBlock a{};
  a.B = s.B, a.T = s.T, a.E = s.E, a.NH = s.NH, a.DH = s.DH, a.KS = s.KS, a.BS = s.BS;
  a.norm_w = dev.put(in.norm_w), a.norm_b = dev.put(in.norm_b);
  a.W_up = W[0], a.W_if = W[1], a.W_down = W[2];
  a.W_qkv = QleCudaBlockMatrix{in.W_qkv.cuda_mode, s.block, qkv.w, qkv.scale, s.BS, s.BS};
  a.b_up = dev.put(in.b_up), a.conv_w = dev.put(in.conv_w), a.conv_b = dev.put(in.conv_b);
  a.b_qkv = dev.put(in.b_qkv), a.b_if = dev.put(in.b_if), a.head_norm_w = dev.put(in.head_norm_w);
  a.head_norm_b = dev.put(in.head_norm_b), a.skip = dev.put(in.skip), a.b_down = dev.put(in.b_down);
  a.k_scale = in.k_scale, a.eps = in.eps, a.norm_eps = in.norm_eps;
  Outputs o;
  MbState st{in.conv, in.C, in.n, in.m};
  const size_t NY = (size_t)(s.B * s.T * s.E), Nconv = st.conv.size(), NC = st.C.size(), Nn = st.n.size(),
               Nm = st.m.size();
  for (int call = 0; call < 2; ++call) {
    a.x = dev.put(in.x[call]), a.conv = dev.put(st.conv), a.C = dev.put(st.C), a.n = dev.put(st.n);
    a.m = dev.put(st.m);
    a.Y = dev.out<float>(NY), a.conv_out = dev.out<float>(Nconv), a.C_out = dev.out<float>(NC);
    a.n_out = dev.out<float>(Nn), a.m_out = dev.out<float>(Nm);
    launch(qle_cuda_mlstm_block(nullptr, &a));
    const MbState next{Device::get(a.conv_out, Nconv), Device::get(a.C_out, NC), Device::get(a.n_out, Nn),
                       Device::get(a.m_out, Nm)};
    add_mb_outputs(&o, in.seq, call, Device::get(a.Y, NY), next);
    st = next;
  }
  return o;
}

void add_mlstm_block(std::vector<Case>* cases, const Mode& m, const MbShape& s, bool seq, uint64_t seed) {
  auto in = std::make_shared<MbInputs>();
  Rng rng{seed};
  in->mode = m, in->s = s, in->seq = seq;
  const long E = s.E, I = s.NH * s.DH;
  for (std::vector<float>& x : in->x) x = rng.floats((size_t)(s.B * s.T * E), -1.0f, 1.0f);
  for (int j = 0; j < 3; ++j) in->W[j] = make_matrix(rng, m, 1, mb_K(s, j), mb_N(s, j), s.block, 0.3f);
  in->W_qkv = make_matrix(rng, m, 3 * (I / s.BS), s.BS, s.BS, s.block, 0.3f);
  const auto around = [&rng](long n, float centre, float half) {
    return rng.floats((size_t)n, centre - half, centre + half);
  };
  in->norm_w = around(E, 1.0f, 0.2f), in->norm_b = around(E, 0.0f, 0.2f), in->b_up = around(2 * I, 0.0f, 0.2f);
  in->conv_w = around(s.KS * I, 0.0f, 0.5f), in->conv_b = around(I, 0.0f, 0.2f);
  in->b_qkv = around(3 * I, 0.0f, 0.2f), in->b_if = around(2 * s.NH, 0.0f, 2.0f);
  in->head_norm_w = around(I, 1.0f, 0.2f), in->head_norm_b = around(I, 0.0f, 0.2f);
  in->skip = around(I, 1.0f, 0.2f), in->b_down = around(E, 0.0f, 0.2f);
  in->conv = rng.floats((size_t)(s.B * s.KS * I), -1.0f, 1.0f);
  in->C = rng.floats((size_t)(s.B * s.NH * s.DH * s.DH), -0.5f, 0.5f);
  in->n = rng.floats((size_t)(s.B * s.NH * s.DH), -0.5f, 0.5f);
  in->m = rng.floats((size_t)(s.B * s.NH), -1.0f, 1.0f);
  in->k_scale = 1.0f / sqrtf((float)s.DH), in->eps = 1e-6f, in->norm_eps = 1e-5f;
  // Exact in every mode: the CUDA block runs the CPU kernel's steps in its order with the same sources. Its dense
  // products accumulate as qle_qmatmul's scalar kernels do (dot_onto), the head-wise q/k/v product as
  // qle_headwise_product does (weights dequantized first, the sum from 0, the bias added last); the norms' sums and
  // the conv's taps run in index order in one thread; the element formulas are qle_block_math.h's, the recurrence
  // is the mLSTM kernel's (exact above).
  const char* op = seq ? "mLSTMBlockSequence" : "mLSTMBlock";
  Case k{shape_name(op, m, {{"B", s.B}, {"T", s.T}, {"E", E}, {"NH", s.NH}, {"DH", s.DH}, {"KS", s.KS},
                            {"BS", s.BS}, {"bs", s.block}}),
         kExact, "exact (same operations, same order)", [in] { return mlstm_block_cpu_calls(*in); },
         [in] { return mlstm_block_gpu_calls(*in); }};
  cases->push_back(k);
}

// The LM's sLSTM block ------------------------------------------------------------------------------------

struct SbShape {
  long B, T, NH, DH, KS, U, block;  // E = NH DH; T = 1 for the step op
  int act;                          // the FFN's activation (QleFfnAct)
};

struct SbInputs {
  Mode mode;
  SbShape s;
  bool seq;
  std::vector<float> x[2];  // [B, T, E]
  Matrix W_gates, R;        // [4, NH, DH, DH]
  Matrix W_up, W_down;      // [E, 2U], [U, E]
  std::vector<float> norm_w, norm_b, conv_w, conv_b, b_gates, b, group_norm_w, group_norm_b, ffn_norm_w,
      ffn_norm_b, b_up, b_down;
  std::vector<float> conv, y, c, n, m;  // the first call's state
  float norm_eps;
};

struct SbState {
  std::vector<float> conv, y, c, n, m;
};

SbState sb_state(const SbShape& s) {
  const size_t E = (size_t)(s.B * s.NH * s.DH);
  return SbState{std::vector<float>(E * (size_t)s.KS), std::vector<float>(E), std::vector<float>(E),
                 std::vector<float>(E), std::vector<float>(E)};
}

void add_sb_outputs(Outputs* o, bool seq, int call, const std::vector<float>& H, const SbState& st) {
  o->add(call_name(seq ? "H" : "h", call), H);
  o->add(call_name("conv", call), st.conv);
  o->add(call_name("y", call), st.y);
  o->add(call_name("c", call), st.c);
  o->add(call_name("n", call), st.n);
  o->add(call_name("m", call), st.m);
}

// The CPU op's kernel call (xlstm/qle_slstm_block_ops.cc), with the matrices packed as it packs constant ones
// (float32 W_up and W_down in column panels).
Outputs slstm_block_cpu_calls(const SbInputs& in) {
  const SbShape& s = in.s;
  const long E = s.NH * s.DH;
  std::vector<QleQMatrix> gates, R;
  check_pack(qle_slstm_pack(in.mode.q, s.block, in.W_gates.bytes.data(), in.W_gates.type, scale_or_null(in.W_gates),
                            s.NH, s.DH, &gates));
  check_pack(qle_slstm_pack(in.mode.q, s.block, in.R.bytes.data(), in.R.type, scale_or_null(in.R), s.NH, s.DH, &R));
  QleBlockMatrix up, down;
  check_pack(qle_qmatrix_pack(in.mode.q, s.block, in.W_up.bytes.data(), in.W_up.type, 0, scale_or_null(in.W_up), E,
                              2 * s.U, &up.w));
  check_pack(qle_qmatrix_pack(in.mode.q, s.block, in.W_down.bytes.data(), in.W_down.type, 0,
                              scale_or_null(in.W_down), s.U, E, &down.w));
  if (in.mode.q == QleQMode::F32) {
    qle_block_panels(&up);
    qle_block_panels(&down);
  }
  Outputs o;
  SbState st{in.conv, in.y, in.c, in.n, in.m};
  for (int call = 0; call < 2; ++call) {
    std::vector<float> H((size_t)(s.B * s.T * E));
    SbState next = sb_state(s);
    QleSlstmBlockArgs a{};
    a.B = s.B, a.T = s.T, a.E = E, a.NH = s.NH, a.KS = s.KS, a.U = s.U;
    a.x = in.x[call].data(), a.conv = st.conv.data(), a.y = st.y.data(), a.c = st.c.data(), a.n = st.n.data();
    a.m = st.m.data(), a.norm_w = in.norm_w.data(), a.norm_b = in.norm_b.data();
    a.conv_w = in.conv_w.data(), a.conv_b = in.conv_b.data();
    a.W_gates = gates.data(), a.R = R.data(), a.b_gates = in.b_gates.data(), a.b = in.b.data();
    a.group_norm_w = in.group_norm_w.data(), a.group_norm_b = in.group_norm_b.data();
    a.ffn_norm_w = in.ffn_norm_w.data(), a.ffn_norm_b = in.ffn_norm_b.data();
    a.W_up = &up, a.W_down = &down, a.b_up = in.b_up.data(), a.b_down = in.b_down.data();
    a.norm_eps = in.norm_eps, a.ffn_act = s.act;
    a.H = H.data(), a.conv_out = next.conv.data(), a.y_out = next.y.data(), a.c_out = next.c.data();
    a.n_out = next.n.data(), a.m_out = next.m.data();
    qle_slstm_block(kReference, a);
    add_sb_outputs(&o, in.seq, call, H, next);
    st = next;
  }
  return o;
}

Outputs slstm_block_gpu_calls(const SbInputs& in) {
  const SbShape& s = in.s;
  const long E = s.NH * s.DH;
  Device dev;
  const auto matrix = [&](const Matrix& w, long K, long N) {
    const DevMatrix d = put_matrix(dev, w);
    return QleCudaBlockMatrix{w.cuda_mode, s.block, d.w, d.scale, K, N};
  };
  QleCudaSlstmBlock a{};
  a.B = s.B, a.T = s.T, a.E = E, a.NH = s.NH, a.KS = s.KS, a.U = s.U;
  a.norm_w = dev.put(in.norm_w), a.norm_b = dev.put(in.norm_b);
  a.conv_w = dev.put(in.conv_w), a.conv_b = dev.put(in.conv_b);
  a.W_gates = matrix(in.W_gates, s.DH, s.DH), a.R = matrix(in.R, s.DH, s.DH);
  a.b_gates = dev.put(in.b_gates), a.b = dev.put(in.b);
  a.group_norm_w = dev.put(in.group_norm_w), a.group_norm_b = dev.put(in.group_norm_b);
  a.ffn_norm_w = dev.put(in.ffn_norm_w), a.ffn_norm_b = dev.put(in.ffn_norm_b);
  a.W_up = matrix(in.W_up, E, 2 * s.U), a.W_down = matrix(in.W_down, s.U, E);
  a.b_up = dev.put(in.b_up), a.b_down = dev.put(in.b_down);
  a.norm_eps = in.norm_eps, a.ffn_act = s.act;
  Outputs o;
  SbState st{in.conv, in.y, in.c, in.n, in.m};
  const size_t NH = (size_t)(s.B * s.T * E), Nconv = st.conv.size(), Ns = st.y.size();
  for (int call = 0; call < 2; ++call) {
    a.x = dev.put(in.x[call]), a.conv = dev.put(st.conv), a.y = dev.put(st.y), a.c = dev.put(st.c);
    a.n = dev.put(st.n), a.m = dev.put(st.m);
    a.H = dev.out<float>(NH), a.conv_out = dev.out<float>(Nconv), a.y_out = dev.out<float>(Ns);
    a.c_out = dev.out<float>(Ns), a.n_out = dev.out<float>(Ns), a.m_out = dev.out<float>(Ns);
    launch(qle_cuda_slstm_block(nullptr, &a));
    const SbState next{Device::get(a.conv_out, Nconv), Device::get(a.y_out, Ns), Device::get(a.c_out, Ns),
                       Device::get(a.n_out, Ns), Device::get(a.m_out, Ns)};
    add_sb_outputs(&o, in.seq, call, Device::get(a.H, NH), next);
    st = next;
  }
  return o;
}

void add_slstm_block(std::vector<Case>* cases, const Mode& m, const SbShape& s, bool seq, uint64_t seed) {
  auto in = std::make_shared<SbInputs>();
  Rng rng{seed};
  in->mode = m, in->s = s, in->seq = seq;
  const long E = s.NH * s.DH;
  for (std::vector<float>& x : in->x) x = rng.floats((size_t)(s.B * s.T * E), -1.0f, 1.0f);
  in->W_gates = make_matrix(rng, m, 4 * s.NH, s.DH, s.DH, s.block, 0.5f);
  in->R = make_matrix(rng, m, 4 * s.NH, s.DH, s.DH, s.block, 0.5f);
  in->W_up = make_matrix(rng, m, 1, E, 2 * s.U, s.block, 0.3f);
  in->W_down = make_matrix(rng, m, 1, s.U, E, s.block, 0.3f);
  const auto around = [&rng](long n, float centre, float half) {
    return rng.floats((size_t)n, centre - half, centre + half);
  };
  in->norm_w = around(E, 1.0f, 0.2f), in->norm_b = around(E, 0.0f, 0.2f);
  in->conv_w = around(s.KS * E, 0.0f, 0.5f), in->conv_b = around(E, 0.0f, 0.2f);
  in->b_gates = around(4 * E, 0.0f, 0.5f), in->b = around(4 * E, 0.0f, 0.5f);
  in->group_norm_w = around(E, 1.0f, 0.2f), in->group_norm_b = around(E, 0.0f, 0.2f);
  in->ffn_norm_w = around(E, 1.0f, 0.2f), in->ffn_norm_b = around(E, 0.0f, 0.2f);
  in->b_up = around(2 * s.U, 0.0f, 0.2f), in->b_down = around(E, 0.0f, 0.2f);
  const size_t NS = (size_t)(s.B * E);
  in->conv = rng.floats(NS * (size_t)s.KS, -1.0f, 1.0f);
  in->y = rng.floats(NS, -0.5f, 0.5f), in->c = rng.floats(NS, -0.5f, 0.5f);
  in->n = rng.floats(NS, 0.5f, 1.5f), in->m = rng.floats(NS, -1.0f, 1.0f);
  in->norm_eps = 1e-5f;
  // Exact in every mode: the CUDA block runs the CPU kernel's steps in its order with the same sources. The gate
  // projections run per head in qle_qmatmul's scalar order (dot_onto, onto b_gates), the FFN products likewise; the
  // norms' sums and the conv's taps run in index order in one thread; the element formulas, the FFN's activation
  // included, are qle_block_math.h's; the recurrence is the sLSTM kernel's (exact above).
  const char* op = seq ? "sLSTMBlockSequence" : "sLSTMBlock";
  Case k{shape_name(op, m, {{"B", s.B}, {"T", s.T}, {"NH", s.NH}, {"DH", s.DH}, {"KS", s.KS}, {"U", s.U},
                            {"bs", s.block}, {"act", s.act}}),
         kExact, "exact (same operations, same order)", [in] { return slstm_block_cpu_calls(*in); },
         [in] { return slstm_block_gpu_calls(*in); }};
  cases->push_back(k);
}

// The case list ----------------------------------------------------------------------------------------

// Shapes: odd sizes, batch > 1, more units than a 128-thread block (the kernels' strided loops), int4
// blocks that do not divide the product's K. T = 0 sequences return the state unchanged.
std::vector<Case> all_cases() {
  std::vector<Case> cases;
  uint64_t seed = 1;
  const QlShape ql_cell[] = {{1, 1, 3, 5, 4}, {3, 1, 7, 13, 4}, {2, 1, 33, 130, 32}};
  const QlShape ql_seq[] = {{1, 4, 3, 5, 4}, {3, 9, 7, 13, 4}, {2, 5, 33, 130, 32}, {2, 0, 3, 5, 4}};
  // (B, T, D, H, K, R, block, counts): K = 3 with counts 2 and 6 crosses the stream limit 2^K = 8
  // (NaN outputs); T >= 16 takes the CPU's level-by-level path; R = 0 has no unary refinement
  const PrShape pr_step[] = {{3, 1, 5, 9, 5, 2, 4, {0, 7, 22}}, {2, 1, 7, 10, 5, 1, 8, {3, 11}},
                             {1, 1, 6, 70, 7, 1, 32, {45}}, {2, 1, 3, 6, 3, 1, 4, {6, 7}}};
  const PrShape pr_seq[] = {{3, 6, 5, 9, 5, 2, 4, {0, 7, 22}}, {1, 19, 4, 17, 6, 0, 16, {18}},
                            {2, 40, 6, 70, 7, 1, 32, {0, 100}}, {2, 5, 3, 6, 3, 1, 4, {2, 6}},
                            {2, 0, 3, 6, 3, 1, 4, {1, 5}}};
  const SShape s_cell[] = {{3, 1, 3, 5, 4}, {2, 1, 2, 70, 32}};
  const SShape s_seq[] = {{2, 7, 2, 12, 8}, {1, 9, 2, 19, 8}, {2, 5, 2, 70, 32}, {2, 0, 1, 5, 4}};
  const MShape m_cell[] = {{1, 1, 1, 4, 4}, {3, 1, 2, 5, 7}, {2, 1, 1, 129, 130}};
  const MShape m_seq[] = {{3, 6, 2, 5, 7}, {2, 4, 1, 129, 130}, {2, 0, 2, 3, 4}};
  // (B, T, E, NH, DK, DV, U, block, cap): int4 blocks that do not divide E, V or U; E, V and U over 128 (the
  // kernels' strided loops); no cap
  const LbShape lb_step[] = {{1, 1, 12, 2, 3, 5, 7, 8, 15.0f}, {3, 1, 10, 1, 6, 9, 5, 4, 3.0f},
                             {2, 1, 130, 2, 33, 65, 131, 32, 0.0f}};
  const LbShape lb_seq[] = {{2, 5, 12, 2, 3, 5, 7, 8, 15.0f}, {1, 9, 10, 1, 6, 9, 5, 4, 0.0f},
                            {2, 4, 130, 2, 33, 65, 131, 32, 15.0f}, {2, 0, 12, 2, 3, 5, 7, 8, 15.0f}};
  // (B, T, E, NH, DH, KS, BS, block): int4 blocks that do not divide E, BS, 3I or I; I and E over 128; T < KS (the
  // window still reaches into the state)
  const MbShape mb_step[] = {{1, 1, 6, 2, 3, 4, 3, 4}, {3, 1, 10, 1, 5, 2, 5, 4}, {2, 1, 130, 2, 65, 4, 13, 32}};
  const MbShape mb_seq[] = {{2, 5, 6, 2, 3, 4, 3, 4}, {1, 9, 10, 1, 5, 3, 5, 4}, {3, 2, 7, 2, 3, 4, 2, 4},
                            {2, 4, 130, 2, 65, 4, 13, 32}, {2, 0, 6, 2, 3, 4, 3, 4}};
  // (B, T, NH, DH, KS, U, block): int4 blocks that do not divide DH, E or U; E and U over 128; T < KS
  const SbShape sb_step[] = {{1, 1, 2, 3, 4, 7, 4, QLE_FFN_GELU}, {3, 1, 1, 10, 2, 5, 4, QLE_FFN_RELU2},
                             {2, 1, 2, 65, 4, 131, 32, QLE_FFN_SELU}};
  const SbShape sb_seq[] = {{2, 5, 2, 3, 4, 7, 4, QLE_FFN_GELU}, {1, 9, 1, 10, 3, 5, 4, QLE_FFN_SIGMOID},
                            {3, 2, 2, 6, 4, 9, 4, QLE_FFN_SWISH}, {2, 4, 2, 65, 4, 131, 32, QLE_FFN_RELU},
                            {2, 0, 2, 3, 4, 7, 4, QLE_FFN_GELU}};
  for (const Mode& m : kModes) {
    for (const QlShape& s : ql_cell) add_qllstm(&cases, m, s, false, seed++);
    for (const QlShape& s : ql_seq) add_qllstm(&cases, m, s, true, seed++);
    for (const PrShape& s : pr_step) add_prlstm(&cases, m, s, false, seed++);
    for (const PrShape& s : pr_seq) add_prlstm(&cases, m, s, true, seed++);
    for (const SShape& s : s_cell) add_slstm(&cases, m, s, false, seed++);
    for (const SShape& s : s_seq) add_slstm(&cases, m, s, true, seed++);
  }
  for (const MShape& s : m_cell) add_mlstm(&cases, s, false, seed++);
  for (const MShape& s : m_seq) add_mlstm(&cases, s, true, seed++);
  for (const Mode& m : kModes) {
    for (const LbShape& s : lb_step) add_large_block(&cases, m, s, false, seed++);
    for (const LbShape& s : lb_seq) add_large_block(&cases, m, s, true, seed++);
  }
  for (const Mode& m : kModes) {
    for (const MbShape& s : mb_step) add_mlstm_block(&cases, m, s, false, seed++);
    for (const MbShape& s : mb_seq) add_mlstm_block(&cases, m, s, true, seed++);
    for (const SbShape& s : sb_step) add_slstm_block(&cases, m, s, false, seed++);
    for (const SbShape& s : sb_seq) add_slstm_block(&cases, m, s, true, seed++);
  }
  return cases;
}

// Running ----------------------------------------------------------------------------------------------

bool run_cpu_only(const Case& c) {
  try {
    c.cpu();
    printf("%-80s  cpu ok\n", c.name.c_str());
    return true;
  } catch (const std::exception& e) {
    printf("%-80s  FAIL  %s\n", c.name.c_str(), e.what());
    return false;
  }
}

bool run_case(const Case& c) {
  try {
    const Verdict v = compare(c.cpu(), c.gpu(), c.tol);
    printf("%-80s  max|diff| %.3e (%s)  tol %.1e [%s]  %s%s\n", c.name.c_str(), v.diff, v.tensor.c_str(), v.allowed,
           c.why, v.ok ? "ok" : "FAIL", v.note.c_str());
    return v.ok;
  } catch (const std::exception& e) {
    printf("%-80s  FAIL  %s\n", c.name.c_str(), e.what());
    return false;
  }
}

// The name of the usable CUDA device, or an empty string (and why in *reason).
std::string cuda_device(std::string* reason) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    *reason = cudaGetErrorString(e);
    return "";
  }
  if (n == 0) {
    *reason = "no CUDA device";
    return "";
  }
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
    *reason = "cudaGetDeviceProperties failed";
    return "";
  }
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ")";
}

}  // namespace

int main(int argc, char** argv) {
  bool cpu_only = false, list = false;
  std::string filter;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--cpu-only") cpu_only = true;
    else if (a == "--list") list = true;
    else if (a == "-h" || a == "--help") {
      printf("usage: %s [--cpu-only] [--list] [FILTER]\n"
             "Runs every CUDA kernel against the scalar CPU kernel on random inputs; one line per case.\n"
             "  --cpu-only  run the CPU side of each case only (no GPU needed)\n"
             "  --list      print the cases\n"
             "  FILTER      only the cases whose name contains it\n"
             "Exit status: 0 every case ok, 1 a case failed, %d no CUDA device.\n", argv[0], kExitNoGpu);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      fprintf(stderr, "unknown option %s (see --help)\n", a.c_str());
      return 2;
    } else filter = a;
  }
  std::vector<Case> cases;
  for (Case& c : all_cases())
    if (c.name.find(filter) != std::string::npos) cases.push_back(c);
  if (list) {
    for (const Case& c : cases) printf("%s  [tol %.0e: %s]\n", c.name.c_str(), c.tol, c.why);
    return 0;
  }
  std::string reason;
  if (!cpu_only) {
    const std::string device = cuda_device(&reason);
    if (device.empty()) {
      printf("no usable CUDA device (%s): nothing compared\n", reason.c_str());
      return kExitNoGpu;
    }
    printf("device: %s\n", device.c_str());
  }
  size_t failed = 0;
  for (const Case& c : cases) failed += cpu_only ? !run_cpu_only(c) : !run_case(c);
  printf("%zu cases, %zu failed\n", cases.size(), failed);
  return failed == 0 ? 0 : 1;
}
