// CPU kernel table: the per-ISA core every family's CPU kernel runs on (matrix products, int8 products,
// row quantization, float16 rounding), one scalar reference implementation plus vectorised variants
// chosen at run time (qle_select_isa): on x86-64 AVX2+FMA, AVX2 + AVX-VNNI, AVX-512, AVX-512 + VNNI;
// on aarch64 NEON and NEON + the ARMv8.2 dot-product instructions. Element-wise maths is not here: the
// families write it once over the lane types of qle_lanes.h, compiled per lane width.
#pragma once

#include <stdint.h>

// out[r, :N] = init[r, :N] + A[r, :K] @ W[:K, :N] for r in [0, M).
// Row strides: lda, ldw, ldinit, ldo (floats). ldinit == 0 broadcasts one init row (the bias).
// init may alias out (in-place accumulation); A must not overlap out.
typedef void (*qle_gemm_fn)(long M, long N, long K, const float* A, long lda, const float* W,
                            long ldw, const float* init, long ldinit, float* out, long ldo);

// Weight-only int8 (also int4 unpacked to int8), block-wise scales along K:
//   out[r, n] = init[r, n] + sum_b scale[b, n] * sum_{k in block b} A[r, k] * W[k, n]
// W is int8 [K, N] (row stride N), scale is float [ceil(K / block), N]; per-channel int8 is
// block = K. Strides and aliasing as for qle_gemm_fn.
typedef void (*qle_gemm_w8_fn)(long M, long N, long K, const float* A, long lda, const int8_t* W,
                               const float* scale, long block, const float* init, long ldinit,
                               float* out, long ldo);

// int8 x int8 -> int32 products (int8-dynamic):
//   acc[r, n] = sum_k Aq[r, k] * W[k, n]                     (exact, int32)
//   out[r, n] = init[r, n] + ((float)acc[r, n] * xs[r]) * ws[n]   (no fused multiply-add)
// Aq: int8 rows of Kp = round_up(K, 4) bytes (zero padded), row stride lda bytes.
// Wp: W packed as [Kp / 4][Np][4] (Np = round_up(N, 16), zero padded): bytes 4n..4n+3 of
// k-group g are W[4g..4g+3, n]. colsum[n] = sum_k W[k, n] (for the unsigned-offset VNNI form).
typedef void (*qle_gemm_i8_fn)(long M, long N, long Kp, const int8_t* Aq, long lda,
                               const float* xs, const int8_t* Wp, long Np, const int32_t* colsum,
                               const float* ws, const float* init, long ldinit, float* out,
                               long ldo);

// Per-row symmetric int8 quantization, exactly the function body's arithmetic:
//   s = max(max_k |x[k]| / 127, 1e-30);  q[k] = clip(round_half_even(x[k] / s), -127, 127)
// for rows r in [0, M) of x (stride ldx floats) into q (stride ldq bytes, zero padded from K
// up to ldq) and xs[r] = s.
typedef void (*qle_quant_rows_fn)(long M, long K, const float* x, long ldx, int8_t* q, long ldq,
                                  float* xs);

// out[i] = (float)(float16)in[i] (round to nearest even), i < n; in may alias out.
typedef void (*qle_round_f16_fn)(long n, const float* in, float* out);

struct QleCpuKernels {
  const char* name;
  qle_gemm_fn gemm;
  qle_gemm_w8_fn gemm_w8;
  qle_gemm_i8_fn gemm_i8;
  qle_quant_rows_fn quant_rows;
  qle_round_f16_fn round_f16;
};

extern const QleCpuKernels qle_kernels_scalar;
#if defined(__x86_64__) || defined(_M_X64)
#define QLE_X86 1
#define QLE_ARCH "x86_64"
#define QLE_ISA_COUNT 5
extern const QleCpuKernels qle_kernels_avx2;
extern const QleCpuKernels qle_kernels_avxvnni;
extern const QleCpuKernels qle_kernels_avx512;
extern const QleCpuKernels qle_kernels_avx512vnni;
#elif defined(__aarch64__)
#define QLE_ARM64 1
#define QLE_ARCH "aarch64"
#define QLE_ISA_COUNT 3
extern const QleCpuKernels qle_kernels_neon;
extern const QleCpuKernels qle_kernels_neon_dotprod;
#else
#define QLE_ARCH "other"
#define QLE_ISA_COUNT 1
#endif

// IEEE binary16 (g++ 12 has no _Float16 in C++ on aarch64; __fp16 is the same format there).
#if defined(__aarch64__)
typedef __fp16 qle_f16;
#else
typedef _Float16 qle_f16;
#endif

// This architecture's ISA names in preference order (best last); qle_cpu_supports(name) tells
// what this CPU runs.
extern const char* const qle_isa_names[QLE_ISA_COUNT];
bool qle_cpu_supports(const char* isa);

// Kernel table for `isa` (one of qle_isa_names, or nullptr/""/"auto" for the best this CPU has).
// Returns nullptr and sets *error when the name is unknown or the CPU lacks the ISA.
const QleCpuKernels* qle_select_isa(const char* isa, const char** error);

// Scalar helpers shared by the vectorised tails and the packing code.
float qle_round_f16_scalar(float x);
float qle_f16_bits_to_f32(uint16_t h);
