// AVX-512 (F, BW, VL) kernels, and the AVX-512 VNNI variant of the int8 products. Only the functions carry the target attribute, so this translation unit
// is built with the baseline x86-64 flags and is only entered after a CPU feature check.
// Column tails use AVX-512 lane masks.
#include "qle_cpu.h"
#include "qle_gemm_blocked.h"

#if defined(QLE_X86)
// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics (_mm512_undefined_ps
// placeholders) once they are inlined; those are false positives.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <string.h>

#define QLE_T __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define QLE_TV __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

static inline __mmask16 tail_mask(long n) {
  return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

// out[r, 0:16*NV] = init[r, ...] + sum_k A[r, k] * W[k, ...]; `last` masks the final vector.
// The unroll pragmas let GCC keep acc[][] in registers (without them it spills every k step).
template <int MR, int NV>
static inline QLE_T void mk_avx512(long K, const float* A, long lda, const float* W, long ldw,
                                   const float* init, long ldinit, float* out, long ldo,
                                   __mmask16 last) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v)
      acc[r][v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, init + r * ldinit + 16 * v);
  for (long k = 0; k < K; ++k) {
    const float* w = W + k * ldw;
    __m512 wv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v)
      wv[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, w + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + k]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, wv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v)
      _mm512_mask_storeu_ps(out + r * ldo + 16 * v, v == NV - 1 ? last : 0xFFFF, acc[r][v]);
}

// The last m < 6 rows of one column panel.
template <int NV>
static inline QLE_T void mk_rows_avx512(long m, long K, const float* A, long lda, const float* W,
                                        long ldw, const float* init, long ldinit, float* out,
                                        long ldo, __mmask16 last) {
  switch (m) {
    case 1: mk_avx512<1, NV>(K, A, lda, W, ldw, init, ldinit, out, ldo, last); break;
    case 2: mk_avx512<2, NV>(K, A, lda, W, ldw, init, ldinit, out, ldo, last); break;
    case 3: mk_avx512<3, NV>(K, A, lda, W, ldw, init, ldinit, out, ldo, last); break;
    case 4: mk_avx512<4, NV>(K, A, lda, W, ldw, init, ldinit, out, ldo, last); break;
    case 5: mk_avx512<5, NV>(K, A, lda, W, ldw, init, ldinit, out, ldo, last); break;
    default: break;
  }
}

// One K x N block of the product (W, init and out already offset), with row tiles of 6 rows x 64
// columns (24 accumulators in registers) and column tails of 16 (masked).
static inline QLE_T void gemm_block_avx512(long M, long N, long K, const float* A, long lda,
                                           const float* W, long ldw, const float* init,
                                           long ldinit, float* out, long ldo) {
  constexpr int MR = 6, NV = 4;
  long j = 0;
  for (; j + 16 * NV <= N; j += 16 * NV) {
    long r = 0;
    for (; r + MR <= M; r += MR)
      mk_avx512<MR, NV>(K, A + r * lda, lda, W + j, ldw, init + r * ldinit + j, ldinit,
                        out + r * ldo + j, ldo, 0xFFFF);
    if (r < M)
      mk_rows_avx512<NV>(M - r, K, A + r * lda, lda, W + j, ldw, init + r * ldinit + j, ldinit,
                         out + r * ldo + j, ldo, 0xFFFF);
  }
  for (; j < N; j += 16) {
    const __mmask16 mask = tail_mask(N - j);
    long r = 0;
    for (; r + MR <= M; r += MR)
      mk_avx512<MR, 1>(K, A + r * lda, lda, W + j, ldw, init + r * ldinit + j, ldinit,
                       out + r * ldo + j, ldo, mask);
    if (r < M)
      mk_rows_avx512<1>(M - r, K, A + r * lda, lda, W + j, ldw, init + r * ldinit + j, ldinit,
                        out + r * ldo + j, ldo, mask);
  }
}

static QLE_T void gemm_avx512(long M, long N, long K, const float* A, long lda, const float* W,
                              long ldw, const float* init, long ldinit, float* out, long ldo) {
  if (M == 1) {  // independent accumulators hide the FMA latency: as many 16-column vectors as N allows
    long j = 0;
    for (; j + 128 <= N; j += 128)
      mk_avx512<1, 8>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo, 0xFFFF);
    if (j + 64 <= N) {
      mk_avx512<1, 4>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo, 0xFFFF);
      j += 64;
    }
    if (j + 32 <= N) {
      mk_avx512<1, 2>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo, 0xFFFF);
      j += 32;
    }
    for (; j < N; j += 16)
      mk_avx512<1, 1>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo, tail_mask(N - j));
    return;
  }
  qle_gemm_blocked<gemm_block_avx512>(M, N, K, A, lda, W, ldw, init, ldinit, out, ldo);
}

// ---------------------------------------------------------------------------------------------
// Weight-only int8 (int4 unpacked to int8): int8 -> float on the fly, per-block scale.

// Columns [0, 16*NV) of rows [0, MR) (pointers already offset to the first column). The unroll pragmas
// keep acc[][] and part[][] in registers, as in mk_avx512.
template <int MR, int NV>
static inline QLE_T void mk_w8_avx512(long N, long K, const float* A, long lda, const int8_t* W,
                                      const float* scale, long block, const float* init,
                                      long ldinit, float* out, long ldo, __mmask16 last) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v)
      acc[r][v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, init + r * ldinit + 16 * v);
  for (long k0 = 0; k0 < K; k0 += block, scale += N) {
    const long k1 = k0 + block < K ? k0 + block : K;
    __m512 part[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) part[r][v] = _mm512_setzero_ps();
    for (long k = k0; k < k1; ++k) {
      const int8_t* w = W + k * N;
      __m512 wv[NV];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v)
        wv[v] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_maskz_loadu_epi8(v == NV - 1 ? last : 0xFFFF, w + 16 * v)));
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const __m512 a = _mm512_set1_ps(A[r * lda + k]);
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) part[r][v] = _mm512_fmadd_ps(a, wv[v], part[r][v]);
      }
    }
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const __m512 sc = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, scale + 16 * v);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) acc[r][v] = _mm512_fmadd_ps(sc, part[r][v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v)
      _mm512_mask_storeu_ps(out + r * ldo + 16 * v, v == NV - 1 ? last : 0xFFFF, acc[r][v]);
}

// Rows [0, M) of one column panel: tiles of 6 rows (12 + 12 accumulators for NV = 2), then the rest.
template <int NV>
static inline QLE_T void w8_panel_avx512(long M, long N, long K, const float* A, long lda,
                                         const int8_t* W, const float* scale, long block,
                                         const float* init, long ldinit, float* out, long ldo,
                                         __mmask16 last) {
  long r = 0;
  for (; r + 6 <= M; r += 6)
    mk_w8_avx512<6, NV>(N, K, A + r * lda, lda, W, scale, block, init + r * ldinit, ldinit,
                        out + r * ldo, ldo, last);
  const float* a = A + r * lda;
  const float* in = init + r * ldinit;
  float* o = out + r * ldo;
  switch (M - r) {
    case 1: mk_w8_avx512<1, NV>(N, K, a, lda, W, scale, block, in, ldinit, o, ldo, last); break;
    case 2: mk_w8_avx512<2, NV>(N, K, a, lda, W, scale, block, in, ldinit, o, ldo, last); break;
    case 3: mk_w8_avx512<3, NV>(N, K, a, lda, W, scale, block, in, ldinit, o, ldo, last); break;
    case 4: mk_w8_avx512<4, NV>(N, K, a, lda, W, scale, block, in, ldinit, o, ldo, last); break;
    case 5: mk_w8_avx512<5, NV>(N, K, a, lda, W, scale, block, in, ldinit, o, ldo, last); break;
    default: break;
  }
}

static QLE_T void gemm_w8_avx512(long M, long N, long K, const float* A, long lda,
                                 const int8_t* W, const float* scale, long block,
                                 const float* init, long ldinit, float* out, long ldo) {
  long j = 0;
  if (M == 1) {  // one row: wide panels for independent accumulators
    for (; j + 64 <= N; j += 64)
      mk_w8_avx512<1, 4>(N, K, A, lda, W + j, scale + j, block, init + j, ldinit, out + j, ldo,
                         0xFFFF);
  }
  for (; j + 32 <= N; j += 32)  // each converted W vector serves 6 rows
    w8_panel_avx512<2>(M, N, K, A, lda, W + j, scale + j, block, init + j, ldinit, out + j, ldo,
                       0xFFFF);
  for (; j < N; j += 16)
    w8_panel_avx512<1>(M, N, K, A, lda, W + j, scale + j, block, init + j, ldinit, out + j, ldo,
                       tail_mask(N - j));
}

// ---------------------------------------------------------------------------------------------
// int8 x int8 products over the [Kp/4][Np][4] packing (see qle_gemm_i8_fn).
//   AVX-512BW:   |a| (u8) * (w negated where a < 0) (s8) with vpmaddubsw (pairs <= 2*127*127,
//                no saturation), vpmaddwd with ones sums the pairs to int32: exact.
//   AVX-512VNNI: vpdpbusd on (a + 128) (u8) * w (s8), minus 128 * colsum[n]: exact (no wrap for
//                Kp * 255 * 127 < 2^31, checked by the caller).

template <bool VNNI, int MR, int NV>
static inline QLE_TV void mk_i8_avx512(long N, long j, long G, const int8_t* Aq, long lda,
                                       const float* xs, const int8_t* Wp, long Np,
                                       const int32_t* colsum, const float* ws,
                                       const float* init, long ldinit, float* out, long ldo) {
  __m512i acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_si512();
  const __m512i ones = _mm512_set1_epi16(1);
  const __m512i off = _mm512_set1_epi32((int)0x80808080u);
  const __m512i zero = _mm512_setzero_si512();
  for (long g = 0; g < G; ++g) {
    __m512i a[MR];
    __mmask64 neg[MR];
    for (int r = 0; r < MR; ++r) {
      int32_t a4;
      memcpy(&a4, Aq + r * lda + 4 * g, 4);
      a[r] = _mm512_set1_epi32(a4);
      if (VNNI) {
        a[r] = _mm512_xor_si512(a[r], off);
      } else {
        neg[r] = _mm512_movepi8_mask(a[r]);
        a[r] = _mm512_abs_epi8(a[r]);
      }
    }
    const int8_t* w = Wp + (g * Np + j) * 4;
    for (int v = 0; v < NV; ++v) {
      const __m512i wv = _mm512_loadu_si512((const void*)(w + 64 * v));
      for (int r = 0; r < MR; ++r) {
        if (VNNI) {
          acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], a[r], wv);
        } else {
          const __m512i sw = _mm512_mask_sub_epi8(wv, neg[r], zero, wv);
          acc[r][v] = _mm512_add_epi32(acc[r][v], _mm512_madd_epi16(_mm512_maddubs_epi16(a[r], sw), ones));
        }
      }
    }
  }
  for (int v = 0; v < NV; ++v) {
    const long n0 = j + 16 * v;
    if (n0 >= N) break;
    const __mmask16 m = tail_mask(N - n0);
    const __m512 wsv = _mm512_loadu_ps(ws + n0);  // ws and colsum are padded to Np
    const __m512i corr = VNNI ? _mm512_slli_epi32(_mm512_loadu_si512((const void*)(colsum + n0)), 7)
                              : zero;
    for (int r = 0; r < MR; ++r) {
      const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][v], corr));
      const __m512 y = _mm512_mul_ps(_mm512_mul_ps(f, _mm512_set1_ps(xs[r])), wsv);
      _mm512_mask_storeu_ps(out + r * ldo + n0, m,
                            _mm512_add_ps(_mm512_maskz_loadu_ps(m, init + r * ldinit + n0), y));
    }
  }
}

template <bool VNNI>
static QLE_TV void gemm_i8_avx512_impl(long M, long N, long Kp, const int8_t* Aq, long lda,
                                       const float* xs, const int8_t* Wp, long Np,
                                       const int32_t* colsum, const float* ws, const float* init,
                                       long ldinit, float* out, long ldo) {
  const long G = Kp / 4;
  long j = 0;
  if (M == 1) {
    for (; j + 128 <= Np; j += 128)
      mk_i8_avx512<VNNI, 1, 8>(N, j, G, Aq, lda, xs, Wp, Np, colsum, ws, init, ldinit, out, ldo);
  }
  for (; j < N; j += 16) {
    long r = 0;
    for (; r + 4 <= M; r += 4)
      mk_i8_avx512<VNNI, 4, 1>(N, j, G, Aq + r * lda, lda, xs + r, Wp, Np, colsum, ws,
                               init + r * ldinit, ldinit, out + r * ldo, ldo);
    for (; r < M; ++r)
      mk_i8_avx512<VNNI, 1, 1>(N, j, G, Aq + r * lda, lda, xs + r, Wp, Np, colsum, ws,
                               init + r * ldinit, ldinit, out + r * ldo, ldo);
  }
}

static QLE_T void gemm_i8_avx512(long M, long N, long Kp, const int8_t* Aq, long lda,
                                 const float* xs, const int8_t* Wp, long Np,
                                 const int32_t* colsum, const float* ws, const float* init,
                                 long ldinit, float* out, long ldo) {
  gemm_i8_avx512_impl<false>(M, N, Kp, Aq, lda, xs, Wp, Np, colsum, ws, init, ldinit, out, ldo);
}

static QLE_TV void gemm_i8_avx512vnni(long M, long N, long Kp, const int8_t* Aq, long lda,
                                      const float* xs, const int8_t* Wp, long Np,
                                      const int32_t* colsum, const float* ws, const float* init,
                                      long ldinit, float* out, long ldo) {
  gemm_i8_avx512_impl<true>(M, N, Kp, Aq, lda, xs, Wp, Np, colsum, ws, init, ldinit, out, ldo);
}

static QLE_T void quant_rows_avx512(long M, long K, const float* x, long ldx, int8_t* q,
                                    long ldq, float* xs) {
  for (long r = 0; r < M; ++r) {
    const float* xr = x + r * ldx;
    int8_t* qr = q + r * ldq;
    __m512 m = _mm512_setzero_ps();
    for (long k = 0; k < K; k += 16)
      m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail_mask(K - k), xr + k)));
    const float amax = _mm512_reduce_max_ps(m);
    float s = amax / 127.0f;
    s = s > 1e-30f ? s : 1e-30f;
    const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (long k = 0; k < K; k += 16) {
      const __mmask16 mk = tail_mask(K - k);
      __m512 v = _mm512_roundscale_ps(_mm512_div_ps(_mm512_maskz_loadu_ps(mk, xr + k), vs),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      _mm_mask_storeu_epi8(qr + k, mk, _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    memset(qr + K, 0, (size_t)(ldq - K));
    xs[r] = s;
  }
}

static QLE_T void round_f16_avx512(long n, const float* in, float* out) {
  for (long i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, in + i),
                                                                    _MM_FROUND_TO_NEAREST_INT)));
  }
}

const QleCpuKernels qle_kernels_avx512 = {"avx512",          gemm_avx512,       gemm_w8_avx512,
                                          gemm_i8_avx512,    quant_rows_avx512, round_f16_avx512};
const QleCpuKernels qle_kernels_avx512vnni = {"avx512vnni",       gemm_avx512,
                                              gemm_w8_avx512,     gemm_i8_avx512vnni,
                                              quant_rows_avx512,  round_f16_avx512};
#endif
