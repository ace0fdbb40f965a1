// AVX-512F kernels. Only the functions carry the target attribute, so this translation unit
// is built with the baseline x86-64 flags and is only entered after a CPU feature check.
// Column tails use AVX-512 lane masks.
#include "qle_cpu.h"

#if defined(QLE_X86)
// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics (_mm512_undefined_ps
// placeholders) once they are inlined; those are false positives.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define QLE_T __attribute__((target("avx512f,avx2,fma")))

static inline __mmask16 tail_mask(long n) {
  return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

// out[r, 0:16*NV] = init[r, ...] + sum_k A[r, k] * W[k, ...]; `last` masks the final vector.
template <int MR, int NV>
static inline QLE_T void mk_avx512(long K, const float* A, long lda, const float* W, long ldw,
                                   const float* init, long ldinit, float* out, long ldo,
                                   __mmask16 last) {
  __m512 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      acc[r][v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, init + r * ldinit + 16 * v);
  for (long k = 0; k < K; ++k) {
    const float* w = W + k * ldw;
    __m512 wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, w + 16 * v);
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, wv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      _mm512_mask_storeu_ps(out + r * ldo + 16 * v, v == NV - 1 ? last : 0xFFFF, acc[r][v]);
}

static QLE_T void gemm_avx512(long M, long N, long K, const float* A, long lda, const float* W,
                              long ldw, const float* init, long ldinit, float* out, long ldo) {
  if (M == 1) {
    long j = 0;
    for (; j + 128 <= N; j += 128)
      mk_avx512<1, 8>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo, 0xFFFF);
    for (; j < N; j += 16)
      mk_avx512<1, 1>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo, tail_mask(N - j));
    return;
  }
  // Row chunks keep the A rows cache resident while the W column panels stream past.
  for (long r0 = 0; r0 < M; r0 += 64) {
    const long m = M - r0 < 64 ? M - r0 : 64;
    const float* a0 = A + r0 * lda;
    const float* i0 = init + r0 * ldinit;
    float* o0 = out + r0 * ldo;
    long j = 0;
    for (; j + 64 <= N; j += 64) {
      long r = 0;
      for (; r + 4 <= m; r += 4)
        mk_avx512<4, 4>(K, a0 + r * lda, lda, W + j, ldw, i0 + r * ldinit + j, ldinit, o0 + r * ldo + j, ldo, 0xFFFF);
      for (; r < m; ++r)
        mk_avx512<1, 4>(K, a0 + r * lda, lda, W + j, ldw, i0 + r * ldinit + j, ldinit, o0 + r * ldo + j, ldo, 0xFFFF);
    }
    for (; j < N; j += 16) {
      const __mmask16 mask = tail_mask(N - j);
      long r = 0;
      for (; r + 4 <= m; r += 4)
        mk_avx512<4, 1>(K, a0 + r * lda, lda, W + j, ldw, i0 + r * ldinit + j, ldinit, o0 + r * ldo + j, ldo, mask);
      for (; r < m; ++r)
        mk_avx512<1, 1>(K, a0 + r * lda, lda, W + j, ldw, i0 + r * ldinit + j, ldinit, o0 + r * ldo + j, ldo, mask);
    }
  }
}

// exp with ~1 ulp error on [-87, 88] (Cephes polynomial); inputs are clamped to that range,
// NaN propagates.
static inline QLE_T __m512 exp_avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(88.0f), x);
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

static inline QLE_T __m512 sigmoid_avx512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

// tanh(x) = sign(x) * (1 - e) / (1 + e), e = exp(-2|x|) in (0, 1]: no overflow, abs error ~1e-7.
static inline QLE_T __m512 tanh_avx512(__m512 x) {
  const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
  const __m512i xi = _mm512_castps_si512(x);
  const __m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(sign, xi));
  const __m512 e = exp_avx512(_mm512_mul_ps(ax, _mm512_set1_ps(-2.0f)));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), _mm512_and_si512(sign, xi)));
}

static QLE_T void gates_avx512(long H, const float* u, const float* h_prev, const float* c_prev,
                               const float* gs, const float* gb, float alpha, float* h_out,
                               float* c_out) {
  const __m512 va = _mm512_set1_ps(alpha);
  const __m512 one = _mm512_set1_ps(1.0f);
  for (long j = 0; j < H; j += 16) {
    const __mmask16 m = tail_mask(H - j);
    const __m512 x = _mm512_maskz_loadu_ps(m, u + j);
    const __m512 i = sigmoid_avx512(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, gs + j), x, _mm512_maskz_loadu_ps(m, gb + j)));
    const __m512 f = sigmoid_avx512(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, gs + H + j), x, _mm512_maskz_loadu_ps(m, gb + H + j)));
    const __m512 g = tanh_avx512(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, gs + 2 * H + j), x, _mm512_maskz_loadu_ps(m, gb + 2 * H + j)));
    const __m512 o = sigmoid_avx512(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, gs + 3 * H + j), x, _mm512_maskz_loadu_ps(m, gb + 3 * H + j)));
    const __m512 hp = _mm512_maskz_loadu_ps(m, h_prev + j);
    const __m512 c = _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(m, c_prev + j), _mm512_mul_ps(i, g));
    const __m512 ht = _mm512_mul_ps(o, tanh_avx512(c));
    __m512 h = _mm512_mul_ps(_mm512_sub_ps(one, f), ht);
    h = _mm512_fmadd_ps(f, hp, h);
    h = _mm512_fmadd_ps(va, hp, h);
    _mm512_mask_storeu_ps(c_out + j, m, c);
    _mm512_mask_storeu_ps(h_out + j, m, h);
  }
}

const QleCpuKernels qle_kernels_avx512 = {"avx512", gemm_avx512, gates_avx512};
#endif
