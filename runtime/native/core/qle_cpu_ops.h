// What the CPU op registrations of every family share: the kernel table of a new kernel and the
// constant weights a quantized kernel packs once at creation.
#pragma once

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

// Whether a check of constant weights passed (releasing a failure's status: the Compute call reports it).
bool qle_check_passed(OrtStatusPtr st);
