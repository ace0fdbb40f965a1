// NEON kernels (ARMv8 baseline: every aarch64 CPU has them), and the ARMv8.2 dot-product
// (sdot) variant of the int8 products; the dot-product functions alone carry the target
// attribute and are only entered after the HWCAP check. The products, quantization and float16
// rounding do the scalar reference's arithmetic in its order (separate multiplies and adds, no
// fused multiply-add), so they return exactly the scalar results.
#include "qle_cpu.h"

#if defined(QLE_ARM64)
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "qle_gemm_blocked.h"

#define QLE_DOT __attribute__((target("arch=armv8.2-a+dotprod")))

// out[r, 0:4*NV] = init[r, 0:4*NV] + A[r, 0] * W[0, :] + A[r, 1] * W[1, :] + ... (k order).
// The unroll pragmas let GCC keep acc[][] in registers.
template <int MR, int NV>
static inline void mk_neon(long K, const float* A, long lda, const float* W, long ldw,
                           const float* init, long ldinit, float* out, long ldo) {
  float32x4_t acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[r][v] = vld1q_f32(init + r * ldinit + 4 * v);
  for (long k = 0; k < K; ++k) {
    const float* w = W + k * ldw;
    float32x4_t wv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) wv[v] = vld1q_f32(w + 4 * v);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const float a = A[r * lda + k];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] = vaddq_f32(acc[r][v], vmulq_n_f32(wv[v], a));
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) vst1q_f32(out + r * ldo + 4 * v, acc[r][v]);
}

// Rows [0, M) of one column panel: tiles of 4 rows, then single rows.
template <int NV>
static inline void mk_rows_neon(long M, long K, const float* A, long lda, const float* W, long ldw,
                                const float* init, long ldinit, float* out, long ldo) {
  long r = 0;
  for (; r + 4 <= M; r += 4)
    mk_neon<4, NV>(K, A + r * lda, lda, W, ldw, init + r * ldinit, ldinit, out + r * ldo, ldo);
  for (; r < M; ++r)
    mk_neon<1, NV>(K, A + r * lda, lda, W, ldw, init + r * ldinit, ldinit, out + r * ldo, ldo);
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

// One K x N block: 16-column panels (4 x 4 accumulators per row tile), 4-column panels, then the
// last N % 4 columns in scalar code.
static void gemm_block_neon(long M, long N, long K, const float* A, long lda, const float* W,
                            long ldw, const float* init, long ldinit, float* out, long ldo) {
  long j = 0;
  for (; j + 16 <= N; j += 16)
    mk_rows_neon<4>(M, K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo);
  for (; j + 4 <= N; j += 4) mk_rows_neon<1>(M, K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo);
  if (j < N) gemm_tail_cols(M, j, N, K, A, lda, W, ldw, init, ldinit, out, ldo);
}

static void gemm_neon(long M, long N, long K, const float* A, long lda, const float* W, long ldw,
                      const float* init, long ldinit, float* out, long ldo) {
  if (M == 1) {  // independent accumulators hide the add latency: 32 columns at a time
    long j = 0;
    for (; j + 32 <= N; j += 32) mk_neon<1, 8>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo);
    gemm_block_neon(1, N - j, K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo);
    return;
  }
  qle_gemm_blocked<gemm_block_neon>(M, N, K, A, lda, W, ldw, init, ldinit, out, ldo);
}

// ---------------------------------------------------------------------------------------------
// Weight-only int8 (int4 unpacked to int8): int8 -> float on the fly, per-block scale.

static inline void w8_to_f32(const int8_t* w, float32x4_t* lo, float32x4_t* hi) {
  const int16x8_t w16 = vmovl_s8(vld1_s8(w));
  *lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w16)));
  *hi = vcvtq_f32_s32(vmovl_high_s16(w16));
}

// Columns [0, 8*NP) of rows [0, MR): part = sum over a block of A[r, k] * W[k, n] (k order),
// acc += scale * part, as the scalar reference.
template <int MR, int NP>
static inline void mk_w8_neon(long N, long K, const float* A, long lda, const int8_t* W,
                              const float* scale, long block, const float* init, long ldinit,
                              float* out, long ldo) {
  float32x4_t acc[MR][2 * NP];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < 2 * NP; ++v) acc[r][v] = vld1q_f32(init + r * ldinit + 4 * v);
  for (long k0 = 0; k0 < K; k0 += block, scale += N) {
    const long k1 = k0 + block < K ? k0 + block : K;
    float32x4_t part[MR][2 * NP];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
      for (int v = 0; v < 2 * NP; ++v) part[r][v] = vdupq_n_f32(0.0f);
    for (long k = k0; k < k1; ++k) {
      float32x4_t wv[2 * NP];
#pragma GCC unroll 16
      for (int p = 0; p < NP; ++p) w8_to_f32(W + k * N + 8 * p, &wv[2 * p], &wv[2 * p + 1]);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const float a = A[r * lda + k];
#pragma GCC unroll 16
        for (int v = 0; v < 2 * NP; ++v) part[r][v] = vaddq_f32(part[r][v], vmulq_n_f32(wv[v], a));
      }
    }
#pragma GCC unroll 16
    for (int v = 0; v < 2 * NP; ++v) {
      const float32x4_t sc = vld1q_f32(scale + 4 * v);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) acc[r][v] = vaddq_f32(acc[r][v], vmulq_f32(sc, part[r][v]));
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < 2 * NP; ++v) vst1q_f32(out + r * ldo + 4 * v, acc[r][v]);
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

static void gemm_w8_neon(long M, long N, long K, const float* A, long lda, const int8_t* W,
                         const float* scale, long block, const float* init, long ldinit,
                         float* out, long ldo) {
  long j = 0;
  if (M == 1)
    for (; j + 32 <= N; j += 32)
      mk_w8_neon<1, 4>(N, K, A, lda, W + j, scale + j, block, init + j, ldinit, out + j, ldo);
  for (; j + 8 <= N; j += 8) {
    long r = 0;
    for (; r + 4 <= M; r += 4)
      mk_w8_neon<4, 1>(N, K, A + r * lda, lda, W + j, scale + j, block, init + r * ldinit + j,
                       ldinit, out + r * ldo + j, ldo);
    for (; r < M; ++r)
      mk_w8_neon<1, 1>(N, K, A + r * lda, lda, W + j, scale + j, block, init + r * ldinit + j,
                       ldinit, out + r * ldo + j, ldo);
  }
  if (j < N) w8_tail_cols(M, j, N, K, A, lda, W, scale, block, init, ldinit, out, ldo);
}

// ---------------------------------------------------------------------------------------------
// int8 x int8 products over the [Kp/4][Np][4] packing (see qle_gemm_i8_fn): 16 bytes of a k-group
// are 4 columns x 4 k. Both forms are exact int32 sums:
//   NEON:     smull (int8 x int8 -> int16, |p| <= 2^14) and sadalp (pairs added into int32);
//             the pair sums of columns n, n+1 and n+2, n+3 are added with addp at the end.
//   dotprod:  sdot (4 products added into each int32 lane).

// out[r, n0:n0+4] = init + ((float)acc * xs[r]) * ws[n] for the columns below N.
static inline void i8_store(int32x4_t acc, long N, long n0, float xs, const float* ws,
                            const float* init, float* out) {
  const float32x4_t y = vmulq_f32(vmulq_n_f32(vcvtq_f32_s32(acc), xs), vld1q_f32(ws + n0));
  if (n0 + 4 <= N) {
    vst1q_f32(out + n0, vaddq_f32(vld1q_f32(init + n0), y));
  } else if (n0 < N) {
    float tmp[4];
    vst1q_f32(tmp, y);
    for (long n = n0; n < N; ++n) out[n] = init[n] + tmp[n - n0];
  }
}

static inline int8x16_t i8_group(const int8_t* a) {
  int32_t a4;
  memcpy(&a4, a, 4);
  return vreinterpretq_s8_s32(vdupq_n_s32(a4));
}

// Rows [0, MR) x columns [j, j + 16).
template <int MR>
static inline void mk_i8_neon(long N, long j, long G, const int8_t* Aq, long lda, const float* xs,
                              const int8_t* Wp, long Np, const float* ws, const float* init,
                              long ldinit, float* out, long ldo) {
  int32x4_t lo[MR][4], hi[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v) lo[r][v] = hi[r][v] = vdupq_n_s32(0);
  for (long g = 0; g < G; ++g) {
    int8x16_t a[MR];
    for (int r = 0; r < MR; ++r) a[r] = i8_group(Aq + r * lda + 4 * g);
    const int8_t* w = Wp + (g * Np + j) * 4;
    for (int v = 0; v < 4; ++v) {
      const int8x16_t wv = vld1q_s8(w + 16 * v);
      for (int r = 0; r < MR; ++r) {
        lo[r][v] = vpadalq_s16(lo[r][v], vmull_s8(vget_low_s8(wv), vget_low_s8(a[r])));
        hi[r][v] = vpadalq_s16(hi[r][v], vmull_high_s8(wv, a[r]));
      }
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v)
      i8_store(vpaddq_s32(lo[r][v], hi[r][v]), N, j + 4 * v, xs[r], ws, init + r * ldinit,
               out + r * ldo);
}

template <int MR>
static inline QLE_DOT void mk_i8_dot(long N, long j, long G, const int8_t* Aq, long lda,
                                     const float* xs, const int8_t* Wp, long Np, const float* ws,
                                     const float* init, long ldinit, float* out, long ldo) {
  int32x4_t acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = vdupq_n_s32(0);
  for (long g = 0; g < G; ++g) {
    int8x16_t a[MR];
    for (int r = 0; r < MR; ++r) a[r] = i8_group(Aq + r * lda + 4 * g);
    const int8_t* w = Wp + (g * Np + j) * 4;
    for (int v = 0; v < 4; ++v) {
      const int8x16_t wv = vld1q_s8(w + 16 * v);
      for (int r = 0; r < MR; ++r) acc[r][v] = vdotq_s32(acc[r][v], wv, a[r]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v)
      i8_store(acc[r][v], N, j + 4 * v, xs[r], ws, init + r * ldinit, out + r * ldo);
}

// Column panels of 16 (Np is a multiple of 16), row tiles of MR rows then single rows.
#define QLE_I8_GEMM(NAME, ATTR, MK, MR)                                                           \
  static ATTR void NAME(long M, long N, long Kp, const int8_t* Aq, long lda, const float* xs,   \
                        const int8_t* Wp, long Np, const int32_t*, const float* ws,             \
                        const float* init, long ldinit, float* out, long ldo) {                  \
    for (long j = 0; j < N; j += 16) {                                                            \
      long r = 0;                                                                                 \
      for (; r + MR <= M; r += MR)                                                                \
        MK<MR>(N, j, Kp / 4, Aq + r * lda, lda, xs + r, Wp, Np, ws, init + r * ldinit, ldinit,    \
               out + r * ldo, ldo);                                                               \
      for (; r < M; ++r)                                                                          \
        MK<1>(N, j, Kp / 4, Aq + r * lda, lda, xs + r, Wp, Np, ws, init + r * ldinit, ldinit,     \
              out + r * ldo, ldo);                                                                \
    }                                                                                             \
  }
QLE_I8_GEMM(gemm_i8_neon, , mk_i8_neon, 2)
QLE_I8_GEMM(gemm_i8_dot, QLE_DOT, mk_i8_dot, 4)
#undef QLE_I8_GEMM

static void quant_rows_neon(long M, long K, const float* x, long ldx, int8_t* q, long ldq,
                            float* xs) {
  for (long r = 0; r < M; ++r) {
    const float* xr = x + r * ldx;
    int8_t* qr = q + r * ldq;
    float32x4_t m = vdupq_n_f32(0.0f);
    long k = 0;
    for (; k + 4 <= K; k += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(xr + k)));  // fmaxf: NaN ignored
    float amax = vmaxnmvq_f32(m);
    for (; k < K; ++k) amax = fmaxf(amax, fabsf(xr[k]));
    float s = amax / 127.0f;
    s = s > 1e-30f ? s : 1e-30f;
    const float32x4_t vs = vdupq_n_f32(s), lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
    for (k = 0; k + 8 <= K; k += 8) {
      int32x4_t i[2];
      for (int h = 0; h < 2; ++h) {
        const float32x4_t v = vrndnq_f32(vdivq_f32(vld1q_f32(xr + k + 4 * h), vs));  // half to even
        i[h] = vcvtq_s32_f32(vminq_f32(vmaxq_f32(v, lo), hi));
      }
      vst1_s8(qr + k, vmovn_s16(vcombine_s16(vmovn_s32(i[0]), vmovn_s32(i[1]))));
    }
    for (; k < K; ++k) {
      float v = nearbyintf(xr[k] / s);
      v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
      qr[k] = (int8_t)v;
    }
    memset(qr + K, 0, (size_t)(ldq - K));
    xs[r] = s;
  }
}

static void round_f16_neon(long n, const float* in, float* out) {
  long i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(out + i, vcvt_f32_f16(vcvt_f16_f32(vld1q_f32(in + i))));
  for (; i < n; ++i) out[i] = qle_round_f16_scalar(in[i]);
}

const QleCpuKernels qle_kernels_neon = {"neon",          gemm_neon,       gemm_w8_neon,
                                        gemm_i8_neon,    quant_rows_neon, round_f16_neon};
const QleCpuKernels qle_kernels_neon_dotprod = {"neon-dotprod", gemm_neon,       gemm_w8_neon,
                                                gemm_i8_dot,    quant_rows_neon, round_f16_neon};
#endif
