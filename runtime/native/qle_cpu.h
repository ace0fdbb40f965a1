// CPU kernel table: one scalar reference implementation plus AVX2+FMA and AVX-512 variants,
// chosen at run time (qle_select_isa).
#pragma once

// out[r, :N] = init[r, :N] + A[r, :K] @ W[:K, :N] for r in [0, M).
// Row strides: lda, ldw, ldinit, ldo (floats). ldinit == 0 broadcasts one init row (the bias).
// init may alias out (in-place accumulation); A must not overlap out.
typedef void (*qle_gemm_fn)(long M, long N, long K, const float* A, long lda, const float* W,
                            long ldw, const float* init, long ldinit, float* out, long ldo);

// Fused gates for one row of H units. u may alias h_out and c_prev may alias c_out;
// h_prev must not alias h_out. gs/gb are [4, H].
typedef void (*qle_gates_fn)(long H, const float* u, const float* h_prev, const float* c_prev,
                             const float* gs, const float* gb, float alpha, float* h_out,
                             float* c_out);

struct QleCpuKernels {
  const char* name;
  qle_gemm_fn gemm;
  qle_gates_fn gates;
};

extern const QleCpuKernels qle_kernels_scalar;
#if defined(__x86_64__) || defined(_M_X64)
#define QLE_X86 1
extern const QleCpuKernels qle_kernels_avx2;
extern const QleCpuKernels qle_kernels_avx512;
#endif

bool qle_cpu_has_avx2();
bool qle_cpu_has_avx512();

// Kernel table for `isa` ("scalar", "avx2", "avx512", or nullptr/"" for the best this CPU has).
// Returns nullptr and sets *error when the name is unknown or the CPU lacks the ISA.
const QleCpuKernels* qle_select_isa(const char* isa, const char** error);
