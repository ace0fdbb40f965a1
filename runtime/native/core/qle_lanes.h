// Element-wise maths shared by every family's kernels: the lane types and exp, log, sigmoid, tanh,
// logsigmoid. Each family's gate maths (<family>/qle_<family>_math.h) is written over them once and
// runs on the CPU lanes and in the CUDA kernels.
//
// The functions are templates over a lane type: float (one value) or a GCC vector of W floats
// (QleLanes<W>). Every CPU kernel loop is written once over QleLanes<W> and compiled for W = 4
// (baseline x86-64 SSE2; NEON on aarch64), 8 (AVX2+FMA) and 16 (AVX-512); selects are lane-wise
// masks, so the loops have no branches. Each lane does the same operations in the same order on
// every path and architecture (build.py passes -ffp-contract=off: no fused multiply-add
// contraction, which g++ otherwise does in C++ even with -std=c++17), so all paths return the
// same values; the x86 8- and 16-lane loops do three steps of exp with fewer instructions that
// return the same bits (qle_fm_clamp, qle_fm_round, qle_fm_ldexp). Accuracy: exp and log ~1 ulp
// (Cephes polynomials), tanh ~1e-7 absolute; NaN propagates.
//
// Under nvcc (__CUDACC__) the float instantiations are __host__ __device__: the CUDA kernels call
// the same source (built with --fmad=false, the device counterpart of -ffp-contract=off, and IEEE
// division, nvcc's default), and the vector-lane machinery (CPU only) is left out.
#pragma once

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define QLE_FM_INLINE static __host__ __device__ __forceinline__
#define QLE_FM_MEMBER static __host__ __device__ __forceinline__
#else
#include "qle_cpu.h"

// Vector arguments of the always-inline helpers: their ABI never matters (they are inlined).
#pragma GCC diagnostic ignored "-Wpsabi"

#define QLE_FM_INLINE static inline __attribute__((always_inline))
#define QLE_FM_MEMBER static inline __attribute__((always_inline))

#if defined(QLE_X86)
#include <immintrin.h>

#define QLE_FM_AVX2 __attribute__((target("avx2,fma,f16c")))
#define QLE_FM_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")))
#endif

// For the lane loops: GCC's scheduler before register allocation (off by default on x86), register
// pressure aware, interleaves a loop body's independent exp chains instead of leaving them one after
// the other. It reorders independent instructions only, so the values are the same.
#define QLE_FM_SCHED __attribute__((optimize("schedule-insns", "sched-pressure")))

template <int W>
struct QleLanes {
  typedef float F __attribute__((vector_size(4 * W)));
  typedef int32_t I __attribute__((vector_size(4 * W)));
  // n <= W values from p (the other lanes 0).
  static inline __attribute__((always_inline)) F load(const float* p, long n) {
    F v = {};
    memcpy(&v, p, n == W ? sizeof v : sizeof(float) * (size_t)n);
    return v;
  }
  static inline __attribute__((always_inline)) void store(float* p, const F& v, long n) {
    memcpy(p, &v, n == W ? sizeof v : sizeof(float) * (size_t)n);
  }
};

#endif  // !__CUDACC__

template <typename I, typename F>
QLE_FM_INLINE I qle_fm_bits(const F& x) {
  I i;
  memcpy(&i, &x, sizeof i);
  return i;
}

template <typename F, typename I>
QLE_FM_INLINE F qle_fm_from_bits(const I& i) {
  F x;
  memcpy(&x, &i, sizeof x);
  return x;
}

QLE_FM_INLINE int32_t qle_fm_to_int(float x) { return (int32_t)x; }
QLE_FM_INLINE float qle_fm_to_float(int32_t x) { return (float)x; }

// Lane type traits: the integer lanes and the int/float conversions of F.
template <typename F>
struct QleFm;
template <>
struct QleFm<float> {
  typedef int32_t I;
  QLE_FM_MEMBER I to_int(float x) { return qle_fm_to_int(x); }
  QLE_FM_MEMBER float to_float(I x) { return qle_fm_to_float(x); }
};

#if !defined(__CUDACC__)
template <int W>
QLE_FM_INLINE typename QleLanes<W>::I qle_fm_to_int(const typename QleLanes<W>::F& x) {
  return __builtin_convertvector(x, typename QleLanes<W>::I);
}
template <int W>
QLE_FM_INLINE typename QleLanes<W>::F qle_fm_to_float(const typename QleLanes<W>::I& x) {
  return __builtin_convertvector(x, typename QleLanes<W>::F);
}

#define QLE_FM_LANES(W)                                                                          \
  template <>                                                                                    \
  struct QleFm<QleLanes<W>::F> {                                                                 \
    typedef QleLanes<W>::I I;                                                                    \
    static inline __attribute__((always_inline)) I to_int(const QleLanes<W>::F& x) {                    \
      return qle_fm_to_int<W>(x);                                                                \
    }                                                                                            \
    static inline __attribute__((always_inline)) QleLanes<W>::F to_float(const I& x) {                  \
      return qle_fm_to_float<W>(x);                                                              \
    }                                                                                            \
  };
QLE_FM_LANES(4)
QLE_FM_LANES(8)
QLE_FM_LANES(16)
#undef QLE_FM_LANES
#endif  // !__CUDACC__

// Three steps of exp, each with one generic form (float, the CUDA kernels and the 4-lane loops)
// and, for the x86 8- and 16-lane loops, fewer instructions that return the same bits:
//   clamp: x to [lo, hi], NaN passes through (min/max with the bound as first operand);
//   round: v to the nearest integer, ties to even, for |v| < 2^22 ((v + 1.5 * 2^23) - 1.5 * 2^23);
//   ldexp: p * 2^n for integer-valued n in [-126, 127] and a normal result (exact either way).
template <typename F>
QLE_FM_INLINE F qle_fm_clamp(const F& x, float lo, float hi) {
  const F zero = {};
  const F y = x > hi ? zero + hi : x;
  return y < lo ? zero + lo : y;
}

template <typename F>
QLE_FM_INLINE F qle_fm_round(const F& v) {
  const float shifter = 12582912.0f;
  return (v + shifter) - shifter;
}

template <typename F>
QLE_FM_INLINE F qle_fm_ldexp(const F& p, const F& n) {
  typedef typename QleFm<F>::I I;
  const I e = (QleFm<F>::to_int(n) + 127) << 23;
  return p * qle_fm_from_bits<F>(e);
}

// The x86 forms are plain inline: always_inline would have GCC inline them into the callers'
// un-targeted template bodies before those reach the AVX2 / AVX-512 loops, which it refuses.
#if defined(QLE_X86) && !defined(__CUDACC__)
template <>
QLE_FM_AVX2 inline QleLanes<8>::F qle_fm_clamp(const QleLanes<8>::F& x, float lo, float hi) {
  return _mm256_max_ps(_mm256_set1_ps(lo), _mm256_min_ps(_mm256_set1_ps(hi), x));
}
template <>
QLE_FM_AVX2 inline QleLanes<8>::F qle_fm_round(const QleLanes<8>::F& v) {
  return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
template <>
QLE_FM_AVX2 inline QleLanes<8>::F qle_fm_ldexp(const QleLanes<8>::F& p, const QleLanes<8>::F& n) {
  // n added to p's exponent field (a NaN n converts to INT_MIN, which adds 0 and leaves p NaN).
  const __m256i e = _mm256_slli_epi32(_mm256_cvttps_epi32(n), 23);
  return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}
template <>
QLE_FM_AVX512 inline QleLanes<16>::F qle_fm_clamp(const QleLanes<16>::F& x, float lo, float hi) {
  return _mm512_max_ps(_mm512_set1_ps(lo), _mm512_min_ps(_mm512_set1_ps(hi), x));
}
template <>
QLE_FM_AVX512 inline QleLanes<16>::F qle_fm_round(const QleLanes<16>::F& v) {
  return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
template <>
QLE_FM_AVX512 inline QleLanes<16>::F qle_fm_ldexp(const QleLanes<16>::F& p, const QleLanes<16>::F& n) {
  return _mm512_scalef_ps(p, n);
}
#endif

// exp(x); x is clamped to [-87, 88] (NaN passes through the clamps unchanged), so the result is normal.
template <typename F>
QLE_FM_INLINE F qle_fm_exp(const F& x_in) {
  const F zero = {};
  const F x = qle_fm_clamp(x_in, -87.0f, 88.0f);
  const F n = qle_fm_round(x * 1.44269504088896341f);
  F r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  F p = zero + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + (r + 1.0f);
  return qle_fm_ldexp(p, n);
}

// log(x) for positive normal x (the kernels call it on [1, 2]).
template <typename F>
QLE_FM_INLINE F qle_fm_log(const F& x) {
  typedef typename QleFm<F>::I I;
  const I bits = qle_fm_bits<I>(x);
  F e = QleFm<F>::to_float(((bits >> 23) & 0xff) - 126);
  const F m0 = qle_fm_from_bits<F>((bits & (int32_t)0x807fffff) | 0x3f000000);  // x = m0 2^e, m0 in [0.5, 1)
  const auto low = m0 < 0.707106781186547524f;
  e = low ? e - 1.0f : e;
  const F m = low ? (m0 + m0) - 1.0f : m0 - 1.0f;
  const F z = m * m;
  F y = m * 7.0376836292e-2f - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y = y + e * -2.12194440e-4f;
  y = y - z * 0.5f;
  return (m + y) + e * 0.693359375f;
}

template <typename F>
QLE_FM_INLINE F qle_fm_sigmoid(const F& x) {
  return 1.0f / (1.0f + qle_fm_exp(-x));
}

// tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|) in (0, 1]: no overflow.
template <typename F>
QLE_FM_INLINE F qle_fm_tanh(const F& x) {
  typedef typename QleFm<F>::I I;
  const I bits = qle_fm_bits<I>(x);
  const F ax = qle_fm_from_bits<F>(bits & 0x7fffffff);
  const F e = qle_fm_exp(ax * -2.0f);
  const F t = (1.0f - e) / (1.0f + e);
  return qle_fm_from_bits<F>(qle_fm_bits<I>(t) | (bits & (int32_t)0x80000000));
}

// log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), with log1p(z) = log(u) z / (u - 1), u = 1 + z
// (z where u - 1 == 0): the function bodies' formula, operation for operation.
template <typename F>
QLE_FM_INLINE F qle_fm_logsigmoid(const F& x) {
  typedef typename QleFm<F>::I I;
  const F ax = qle_fm_from_bits<F>(qle_fm_bits<I>(x) & 0x7fffffff);
  const F z = qle_fm_exp(-ax);
  const F u = 1.0f + z;
  const F d = u - 1.0f;
  const F ratio = (qle_fm_log(u) * z) / d;
  const F lp = d == 0.0f ? z : ratio;
  const F zero = {};
  const F lo = x < 0.0f ? x : zero;
  return lo - lp;
}

#if !defined(__CUDACC__)
// Which lane width goes with a gemm kernel table: 0 baseline, 1 AVX2 (avx2, avxvnni),
// 2 AVX-512 (avx512, avx512vnni).
inline int qle_lanes_isa_level(const QleCpuKernels* k) {
  if (strncmp(k->name, "avx512", 6) == 0) return 2;
  if (strncmp(k->name, "avx", 3) == 0) return 1;
  return 0;
}

// A family's lane loops, written once as a macro LOOPS(NAME, ATTR, W) that defines <prefix>NAME, compiled for
// every lane width this architecture has: base (4 lanes: SSE2, NEON), and on x86 avx2 (8) and avx512 (16).
// QLE_LANES_PICK(k, prefix) is the instance that goes with kernel table k.
#if defined(QLE_X86)
#define QLE_LANES_INSTANCES(LOOPS) \
  LOOPS(base, , 4)                 \
  LOOPS(avx2, QLE_FM_AVX2, 8)      \
  LOOPS(avx512, QLE_FM_AVX512, 16)
#define QLE_LANES_PICK(k, PREFIX) \
  (qle_lanes_isa_level(k) == 2 ? PREFIX##avx512 : qle_lanes_isa_level(k) == 1 ? PREFIX##avx2 : PREFIX##base)
#else
#define QLE_LANES_INSTANCES(LOOPS) LOOPS(base, , 4)
#define QLE_LANES_PICK(k, PREFIX) ((void)(k), PREFIX##base)
#endif
#endif
