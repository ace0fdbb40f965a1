// Scalar reference kernels and run-time ISA selection.
#include <string.h>

#include "qle_cpu.h"
#include "qle_gates.h"

static void gemm_scalar(long M, long N, long K, const float* A, long lda, const float* W,
                        long ldw, const float* init, long ldinit, float* out, long ldo) {
  for (long r = 0; r < M; ++r) {
    const float* a = A + r * lda;
    const float* in = init + r * ldinit;
    float* o = out + r * ldo;
    if (o != in) memcpy(o, in, sizeof(float) * N);
    for (long k = 0; k < K; ++k) {
      const float ak = a[k];
      const float* w = W + k * ldw;
      for (long j = 0; j < N; ++j) o[j] += ak * w[j];
    }
  }
}

static void gates_scalar(long H, const float* u, const float* h_prev, const float* c_prev,
                         const float* gs, const float* gb, float alpha, float* h_out,
                         float* c_out) {
  for (long j = 0; j < H; ++j) {
    qle_cell_element(u[j], gs + j, gb + j, H, h_prev[j], c_prev[j], alpha, h_out + j, c_out + j);
  }
}

const QleCpuKernels qle_kernels_scalar = {"scalar", gemm_scalar, gates_scalar};

#if defined(QLE_X86)
bool qle_cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
bool qle_cpu_has_avx512() {
  return __builtin_cpu_supports("avx512f") && qle_cpu_has_avx2();
}
#else
bool qle_cpu_has_avx2() { return false; }
bool qle_cpu_has_avx512() { return false; }
#endif

const QleCpuKernels* qle_select_isa(const char* isa, const char** error) {
  *error = nullptr;
  if (isa == nullptr || isa[0] == '\0' || strcmp(isa, "auto") == 0) {
#if defined(QLE_X86)
    if (qle_cpu_has_avx512()) return &qle_kernels_avx512;
    if (qle_cpu_has_avx2()) return &qle_kernels_avx2;
#endif
    return &qle_kernels_scalar;
  }
  if (strcmp(isa, "scalar") == 0) return &qle_kernels_scalar;
  if (strcmp(isa, "avx2") == 0) {
#if defined(QLE_X86)
    if (qle_cpu_has_avx2()) return &qle_kernels_avx2;
#endif
    *error = "this CPU does not support AVX2+FMA";
    return nullptr;
  }
  if (strcmp(isa, "avx512") == 0) {
#if defined(QLE_X86)
    if (qle_cpu_has_avx512()) return &qle_kernels_avx512;
#endif
    *error = "this CPU does not support AVX-512F";
    return nullptr;
  }
  *error = "unknown ISA name (expected scalar, avx2, avx512 or auto)";
  return nullptr;
}
