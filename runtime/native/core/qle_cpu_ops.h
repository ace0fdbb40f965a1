// What the CPU op registrations of every family share: the op and kernel around a family's run and
// prepack functions (QleCpuOp), the kernel table of a new kernel, the constant weights a quantized
// kernel packs once at creation, and splitting a call's work over onnxruntime's intra-op pool.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qle_contract.h"
#include "qle_cpu.h"

// The kernel table QLSTM_EDGE_NATIVE_ISA names (qle_select_isa; unset: the best this CPU runs), or an
// error status naming the op.
OrtStatusPtr qle_op_cpu_kernels(const QleOpSpec& op, const QleCpuKernels** k);

// Loads the matrix inputs of a node of `mode` (and, in the integer modes, their appended scales) into
// *in when every one is a constant initializer of an element type the mode accepts; false otherwise
// (each Compute call then packs its own copy and reports what is wrong).
bool qle_constant_weights(const OrtKernelInfo* info, const QleOpSpec& op, QleQMode mode, QleOpInputs* in);

constexpr long kQleParallelWork = 1L << 17;  // multiply-adds below which a call stays on one thread

// Splits [0, total) into up to `parts` contiguous ranges, run by onnxruntime's intra-op pool.
template <typename Args, void (*Fn)(const QleCpuKernels*, const Args&, long, long)>
struct QleRanges {
  const QleCpuKernels* k;
  const Args* a;
  long total, parts;
  static void task(void* p, size_t i) {
    const QleRanges& r = *static_cast<const QleRanges*>(p);
    const long lo = r.total * (long)i / r.parts, hi = r.total * ((long)i + 1) / r.parts;
    Fn(r.k, *r.a, lo, hi);
  }
  void run(Ort::KernelContext& ctx, long work) {
    if (parts > 1 && work >= kQleParallelWork)
      ctx.ParallelFor(task, (size_t)parts, 0, this);
    else
      Fn(k, *a, 0, total);
  }
};

// Reads the node's value of each of op's float attributes into *values and of each of its string attributes
// (choices) into *choices, as the index of the value; or fails naming the op and attribute.
OrtStatusPtr qle_read_attributes(const OrtApi& api, const OrtKernelInfo* info, const QleOpSpec& op,
                                 std::vector<float>* values, std::vector<int>* choices);

// Whether a check of constant weights passed (releasing a failure's status: the Compute call reports it).
bool qle_check_passed(OrtStatusPtr st);

// Weights of a quantized node as its kernel packed them at creation from constant initializers (w
// null otherwise: each Compute call packs its own copy).
template <typename Weights>
struct QlePacked {
  QleQMode mode = QleQMode::F32;
  long block = 0;
  std::vector<float> attributes;  // the node's values of the spec's float attributes, in order
  std::vector<int> choices;       // and of its string attributes (indices into their values)
  std::unique_ptr<Weights> w;
  std::string error;  // packing the constants failed: every call reports it

  // The weights a checked node runs with: the prepacked ones, else *local filled by pack(local) (an
  // error message or null). A status when either packing failed.
  template <typename Pack>
  OrtStatusPtr get(const QleOpInputs& in, Weights* local, Pack&& pack, const Weights** out) const {
    if (!error.empty()) return in.invalid(error);
    *out = w.get();
    if (*out != nullptr) return nullptr;
    if (const char* e = pack(local)) return in.invalid(e);
    *out = local;
    return nullptr;
  }
};

// The weights of an op that holds none (float32 nodes only).
struct QleNoWeights {};

// A family's run function: checks a node (QleOpInputs loaded) and runs it on kernel table k, its
// weights from `packed`.
template <typename Weights>
using QleCpuRun = OrtStatusPtr (*)(Ort::KernelContext& ctx, const QleCpuKernels* k, const QleOpInputs& in,
                                   const QlePacked<Weights>& packed);
// A family's prepack function: given the constant matrices and scales of a quantized node in `in`
// (qle_constant_weights), packs them into *packed when they pass the checks (otherwise each Compute
// call reports what is wrong).
template <typename Weights>
using QleCpuPrepack = void (*)(const QleOpInputs& in, QlePacked<Weights>* packed);

template <typename Weights, QleCpuRun<Weights> Run>
struct QleCpuKernel {
  const QleOpSpec& op;
  const QleCpuKernels* k;
  QlePacked<Weights> packed;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return qle_op_compute(context, op, packed.mode,
                          [&](Ort::KernelContext& ctx, const QleOpInputs& in) { return Run(ctx, k, in, packed); });
  }
};

// A CPU op (every input in host memory): its kernel runs Run with the ISA QLSTM_EDGE_NATIVE_ISA selects.
// An op with matrices (Prepack not null) reads the node's quantization mode and, quantized (or in every
// mode with PrepackF32, for a kernel that lays out float32 weights its own way), prepacks constant
// weights; an op without (Prepack null) takes float32 nodes only.
template <typename Weights, QleCpuRun<Weights> Run, QleCpuPrepack<Weights> Prepack, bool PrepackF32 = false>
struct QleCpuOp : QleOpSchema<QleCpuOp<Weights, Run, Prepack, PrepackF32>, QleCpuKernel<Weights, Run>> {
  typedef QleCpuKernel<Weights, Run> Kernel;
  explicit QleCpuOp(const QleOpSpec& s) : QleOpSchema<QleCpuOp<Weights, Run, Prepack, PrepackF32>, Kernel>(s) {}
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    const QleOpSpec& op = this->spec();
    const QleCpuKernels* k = nullptr;
    if (OrtStatusPtr st = qle_op_cpu_kernels(op, &k)) return st;
    std::unique_ptr<Kernel> kern(new Kernel{op, k, {}});
    QlePacked<Weights>& pk = kern->packed;
    if (OrtStatusPtr st = qle_read_attributes(api, info, op, &pk.attributes, &pk.choices)) return st;
    if constexpr (Prepack != nullptr) {
      if (OrtStatusPtr st = qle_read_qmode(api, info, op.name, &pk.mode, &pk.block)) return st;
      if (OrtStatusPtr st = qle_guarded(op.name, [&]() -> OrtStatusPtr {
            QleOpInputs in{op, pk.mode, {}, {}, {}};
            if ((PrepackF32 || pk.mode != QleQMode::F32) && qle_constant_weights(info, op, pk.mode, &in))
              Prepack(in, &pk);
            return nullptr;
          }))
        return st;
    }
    *kernel = kern.release();
    return nullptr;
  }
};
