// AVX2+FMA(+F16C) kernels, and the AVX-VNNI variant of the int8 products. Only the functions
// carry target attributes, so this translation unit is built with the baseline x86-64 flags and
// is only entered after a CPU feature check.
#include "qle_cpu.h"
#include "qle_gemm_blocked.h"

#if defined(QLE_X86)
#include <immintrin.h>
#include <string.h>


#define QLE_T __attribute__((target("avx2,fma,f16c")))
#define QLE_TV __attribute__((target("avx2,fma,f16c,avxvnni")))

// out[r, 0:8*NV] = init[r, 0:8*NV] + sum_k A[r, k] * W[k, 0:8*NV]
// The unroll pragmas let GCC keep acc[][] in registers (without them it spills every k step).
template <int MR, int NV>
static inline QLE_T void mk_avx2(long K, const float* A, long lda, const float* W, long ldw,
                                 const float* init, long ldinit, float* out, long ldo) {
  __m256 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_loadu_ps(init + r * ldinit + 8 * v);
  for (long k = 0; k < K; ++k) {
    const float* w = W + k * ldw;
    __m256 wv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) wv[v] = _mm256_loadu_ps(w + 8 * v);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, wv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(out + r * ldo + 8 * v, acc[r][v]);
}

// The last m < 6 rows of one column panel.
template <int NV>
static inline QLE_T void mk_rows_avx2(long m, long K, const float* A, long lda, const float* W,
                                      long ldw, const float* init, long ldinit, float* out,
                                      long ldo) {
  switch (m) {
    case 1: mk_avx2<1, NV>(K, A, lda, W, ldw, init, ldinit, out, ldo); break;
    case 2: mk_avx2<2, NV>(K, A, lda, W, ldw, init, ldinit, out, ldo); break;
    case 3: mk_avx2<3, NV>(K, A, lda, W, ldw, init, ldinit, out, ldo); break;
    case 4: mk_avx2<4, NV>(K, A, lda, W, ldw, init, ldinit, out, ldo); break;
    case 5: mk_avx2<5, NV>(K, A, lda, W, ldw, init, ldinit, out, ldo); break;
    default: break;
  }
}

static void gemm_tail_cols(long M, long j0, long N, long K, const float* A, long lda,
                           const float* W, long ldw, const float* init, long ldinit, float* out,
                           long ldo) {
  for (long r = 0; r < M; ++r) {
    for (long j = j0; j < N; ++j) {
      float s = init[r * ldinit + j];
      for (long k = 0; k < K; ++k) s += A[r * lda + k] * W[k * ldw + j];
      out[r * ldo + j] = s;
    }
  }
}

// One K x N block of the product (W, init and out already offset): row tiles of 6 rows x 16
// columns (12 accumulators + 2 W vectors + 1 broadcast of the 16 ymm registers), then 8-column
// panels, then the last N % 8 columns in scalar code.
static inline QLE_T void gemm_block_avx2(long M, long N, long K, const float* A, long lda,
                                         const float* W, long ldw, const float* init,
                                         long ldinit, float* out, long ldo) {
  constexpr int MR = 6, NV = 2;
  long j = 0;
  for (; j + 8 * NV <= N; j += 8 * NV) {
    long r = 0;
    for (; r + MR <= M; r += MR)
      mk_avx2<MR, NV>(K, A + r * lda, lda, W + j, ldw, init + r * ldinit + j, ldinit,
                      out + r * ldo + j, ldo);
    if (r < M)
      mk_rows_avx2<NV>(M - r, K, A + r * lda, lda, W + j, ldw, init + r * ldinit + j, ldinit,
                       out + r * ldo + j, ldo);
  }
  for (; j + 8 <= N; j += 8) {
    long r = 0;
    for (; r + MR <= M; r += MR)
      mk_avx2<MR, 1>(K, A + r * lda, lda, W + j, ldw, init + r * ldinit + j, ldinit,
                     out + r * ldo + j, ldo);
    if (r < M)
      mk_rows_avx2<1>(M - r, K, A + r * lda, lda, W + j, ldw, init + r * ldinit + j, ldinit,
                      out + r * ldo + j, ldo);
  }
  if (j < N) gemm_tail_cols(M, j, N, K, A, lda, W, ldw, init, ldinit, out, ldo);
}

static QLE_T void gemm_avx2(long M, long N, long K, const float* A, long lda, const float* W,
                            long ldw, const float* init, long ldinit, float* out, long ldo) {
  if (M == 1) {  // independent accumulators hide the FMA latency: as many 8-column vectors as N allows
    long j = 0;
    for (; j + 64 <= N; j += 64) mk_avx2<1, 8>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo);
    if (j + 32 <= N) {
      mk_avx2<1, 4>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo);
      j += 32;
    }
    if (j + 16 <= N) {
      mk_avx2<1, 2>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo);
      j += 16;
    }
    for (; j + 8 <= N; j += 8) mk_avx2<1, 1>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo);
    if (j < N) gemm_tail_cols(1, j, N, K, A, lda, W, ldw, init, ldinit, out, ldo);
    return;
  }
  qle_gemm_blocked<gemm_block_avx2>(M, N, K, A, lda, W, ldw, init, ldinit, out, ldo);
}

// ---------------------------------------------------------------------------------------------
// Weight-only int8 (int4 unpacked to int8): int8 -> float on the fly, per-block scale.

// Columns [j, j + 8*NV) of rows [0, MR). The unroll pragmas keep acc[][] and part[][] in registers.
template <int MR, int NV>
static inline QLE_T void mk_w8_avx2(long N, long K, const float* A, long lda, const int8_t* W,
                                    const float* scale, long block, const float* init,
                                    long ldinit, float* out, long ldo) {
  __m256 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_loadu_ps(init + r * ldinit + 8 * v);
  for (long k0 = 0; k0 < K; k0 += block, scale += N) {
    const long k1 = k0 + block < K ? k0 + block : K;
    __m256 part[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) part[r][v] = _mm256_setzero_ps();
    for (long k = k0; k < k1; ++k) {
      const int8_t* w = W + k * N;
      __m256 wv[NV];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v)
        wv[v] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(w + 8 * v))));
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) part[r][v] = _mm256_fmadd_ps(a, wv[v], part[r][v]);
      }
    }
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const __m256 sc = _mm256_loadu_ps(scale + 8 * v);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) acc[r][v] = _mm256_fmadd_ps(sc, part[r][v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(out + r * ldo + 8 * v, acc[r][v]);
}

static void w8_tail_cols(long M, long j0, long N, long K, const float* A, long lda,
                         const int8_t* W, const float* scale, long block, const float* init,
                         long ldinit, float* out, long ldo) {
  for (long r = 0; r < M; ++r) {
    for (long n = j0; n < N; ++n) {
      float acc = init[r * ldinit + n];
      for (long k0 = 0, b = 0; k0 < K; k0 += block, ++b) {
        const long k1 = k0 + block < K ? k0 + block : K;
        float part = 0.0f;
        for (long k = k0; k < k1; ++k) part += A[r * lda + k] * (float)W[k * N + n];
        acc += scale[b * N + n] * part;
      }
      out[r * ldo + n] = acc;
    }
  }
}

static QLE_T void gemm_w8_avx2(long M, long N, long K, const float* A, long lda, const int8_t* W,
                               const float* scale, long block, const float* init, long ldinit,
                               float* out, long ldo) {
  long j = 0;
  if (M == 1) {
    for (; j + 32 <= N; j += 32)
      mk_w8_avx2<1, 4>(N, K, A, lda, W + j, scale + j, block, init + j, ldinit, out + j, ldo);
    if (j + 16 <= N) {
      mk_w8_avx2<1, 2>(N, K, A, lda, W + j, scale + j, block, init + j, ldinit, out + j, ldo);
      j += 16;
    }
  }
  for (; j + 8 <= N; j += 8) {
    long r = 0;
    for (; r + 4 <= M; r += 4)
      mk_w8_avx2<4, 1>(N, K, A + r * lda, lda, W + j, scale + j, block, init + r * ldinit + j,
                       ldinit, out + r * ldo + j, ldo);
    for (; r < M; ++r)
      mk_w8_avx2<1, 1>(N, K, A + r * lda, lda, W + j, scale + j, block, init + r * ldinit + j,
                       ldinit, out + r * ldo + j, ldo);
  }
  if (j < N) w8_tail_cols(M, j, N, K, A, lda, W, scale, block, init, ldinit, out, ldo);
}

// ---------------------------------------------------------------------------------------------
// int8 x int8 products over the [Kp/4][Np][4] packing (see qle_gemm_i8_fn).
//   AVX2:     |a| (u8) * sign(w, a) (s8) with vpmaddubsw (pairs <= 2*127*127, no saturation),
//             vpmaddwd with ones sums the pairs to int32: exact.
//   AVX-VNNI: vpdpbusd on (a + 128) (u8) * w (s8), minus 128 * colsum[n]: exact (no wrap for
//             Kp * 255 * 127 < 2^31, checked by the caller).

template <bool VNNI, int MR, int NV>
static inline QLE_TV void mk_i8_avx2(long N, long j, long G, const int8_t* Aq, long lda,
                                     const float* xs, const int8_t* Wp, long Np,
                                     const int32_t* colsum, const float* ws, const float* init,
                                     long ldinit, float* out, long ldo) {
  __m256i acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i off = _mm256_set1_epi32((int)0x80808080u);
  for (long g = 0; g < G; ++g) {
    __m256i a[MR];
    for (int r = 0; r < MR; ++r) {
      int32_t a4;
      memcpy(&a4, Aq + r * lda + 4 * g, 4);
      a[r] = _mm256_set1_epi32(a4);
      if (VNNI) a[r] = _mm256_xor_si256(a[r], off);
    }
    const int8_t* w = Wp + (g * Np + j) * 4;
    for (int v = 0; v < NV; ++v) {
      const __m256i wv = _mm256_loadu_si256((const __m256i*)(w + 32 * v));
      for (int r = 0; r < MR; ++r) {
        if (VNNI) {
          acc[r][v] = _mm256_dpbusd_avx_epi32(acc[r][v], a[r], wv);
        } else {
          const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(a[r]), _mm256_sign_epi8(wv, a[r]));
          acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(p, ones));
        }
      }
    }
  }
  for (int v = 0; v < NV; ++v) {
    const long n0 = j + 8 * v;
    const __m256 wsv = _mm256_loadu_ps(ws + n0);  // ws is padded to Np
    const __m256i corr = VNNI ? _mm256_slli_epi32(_mm256_loadu_si256((const __m256i*)(colsum + n0)), 7)
                              : _mm256_setzero_si256();
    for (int r = 0; r < MR; ++r) {
      const __m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][v], corr));
      const __m256 y = _mm256_mul_ps(_mm256_mul_ps(f, _mm256_set1_ps(xs[r])), wsv);
      if (n0 + 8 <= N) {
        _mm256_storeu_ps(out + r * ldo + n0, _mm256_add_ps(_mm256_loadu_ps(init + r * ldinit + n0), y));
      } else if (n0 < N) {
        float tmp[8];
        _mm256_storeu_ps(tmp, y);
        for (long n = n0; n < N; ++n) out[r * ldo + n] = init[r * ldinit + n] + tmp[n - n0];
      }
    }
  }
}

template <bool VNNI>
static QLE_TV void gemm_i8_avx2_impl(long M, long N, long Kp, const int8_t* Aq, long lda,
                                     const float* xs, const int8_t* Wp, long Np,
                                     const int32_t* colsum, const float* ws, const float* init,
                                     long ldinit, float* out, long ldo) {
  const long G = Kp / 4;
  long j = 0;
  if (M == 1) {
    for (; j + 64 <= Np; j += 64)
      mk_i8_avx2<VNNI, 1, 8>(N, j, G, Aq, lda, xs, Wp, Np, colsum, ws, init, ldinit, out, ldo);
  }
  for (; j < Np && j < N; j += 16) {
    long r = 0;
    for (; r + 4 <= M; r += 4)
      mk_i8_avx2<VNNI, 4, 2>(N, j, G, Aq + r * lda, lda, xs + r, Wp, Np, colsum, ws,
                             init + r * ldinit, ldinit, out + r * ldo, ldo);
    for (; r < M; ++r)
      mk_i8_avx2<VNNI, 1, 2>(N, j, G, Aq + r * lda, lda, xs + r, Wp, Np, colsum, ws,
                             init + r * ldinit, ldinit, out + r * ldo, ldo);
  }
}

static QLE_T void gemm_i8_avx2(long M, long N, long Kp, const int8_t* Aq, long lda,
                               const float* xs, const int8_t* Wp, long Np, const int32_t* colsum,
                               const float* ws, const float* init, long ldinit, float* out,
                               long ldo) {
  gemm_i8_avx2_impl<false>(M, N, Kp, Aq, lda, xs, Wp, Np, colsum, ws, init, ldinit, out, ldo);
}

static QLE_TV void gemm_i8_avxvnni(long M, long N, long Kp, const int8_t* Aq, long lda,
                                   const float* xs, const int8_t* Wp, long Np,
                                   const int32_t* colsum, const float* ws, const float* init,
                                   long ldinit, float* out, long ldo) {
  gemm_i8_avx2_impl<true>(M, N, Kp, Aq, lda, xs, Wp, Np, colsum, ws, init, ldinit, out, ldo);
}

static QLE_T void quant_rows_avx2(long M, long K, const float* x, long ldx, int8_t* q, long ldq,
                                  float* xs) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (long r = 0; r < M; ++r) {
    const float* xr = x + r * ldx;
    int8_t* qr = q + r * ldq;
    __m256 m = _mm256_setzero_ps();
    long k = 0;
    for (; k + 8 <= K; k += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xr + k)));
    float lanes[8];
    _mm256_storeu_ps(lanes, m);
    float amax = 0.0f;
    for (int i = 0; i < 8; ++i) amax = amax > lanes[i] ? amax : lanes[i];
    for (; k < K; ++k) {
      const float a = xr[k] < 0.0f ? -xr[k] : xr[k];
      amax = amax > a ? amax : a;
    }
    float s = amax / 127.0f;
    s = s > 1e-30f ? s : 1e-30f;
    const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (k = 0; k + 8 <= K; k += 8) {
      __m256 v = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(xr + k), vs),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      const __m256i i32 = _mm256_cvtps_epi32(v);
      const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
      _mm_storel_epi64((__m128i*)(qr + k), _mm_packs_epi16(p16, p16));
    }
    for (; k < K; ++k) {
      float v = _mm_cvtss_f32(_mm_round_ss(_mm_setzero_ps(), _mm_set_ss(xr[k] / s),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
      qr[k] = (int8_t)v;
    }
    memset(qr + K, 0, (size_t)(ldq - K));
    xs[r] = s;
  }
}

static QLE_T void round_f16_avx2(long n, const float* in, float* out) {
  long i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(in + i),
                                                              _MM_FROUND_TO_NEAREST_INT)));
  for (; i < n; ++i) out[i] = qle_round_f16_scalar(in[i]);
}

const QleCpuKernels qle_kernels_avx2 = {"avx2",          gemm_avx2,       gemm_w8_avx2,
                                        gemm_i8_avx2,    quant_rows_avx2, round_f16_avx2};
const QleCpuKernels qle_kernels_avxvnni = {"avxvnni",       gemm_avx2,       gemm_w8_avx2,
                                           gemm_i8_avxvnni, quant_rows_avx2, round_f16_avx2};
#endif
