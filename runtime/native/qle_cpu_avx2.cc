// AVX2+FMA kernels. Only the functions carry the target attribute, so this translation unit
// is built with the baseline x86-64 flags and is only entered after a CPU feature check.
#include "qle_cpu.h"

#if defined(QLE_X86)
#include <immintrin.h>

#include "qle_gates.h"

#define QLE_T __attribute__((target("avx2,fma")))

// out[r, 0:8*NV] = init[r, 0:8*NV] + sum_k A[r, k] * W[k, 0:8*NV]
template <int MR, int NV>
static inline QLE_T void mk_avx2(long K, const float* A, long lda, const float* W, long ldw,
                                 const float* init, long ldinit, float* out, long ldo) {
  __m256 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_loadu_ps(init + r * ldinit + 8 * v);
  for (long k = 0; k < K; ++k) {
    const float* w = W + k * ldw;
    __m256 wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = _mm256_loadu_ps(w + 8 * v);
    for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, wv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(out + r * ldo + 8 * v, acc[r][v]);
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

static QLE_T void gemm_avx2(long M, long N, long K, const float* A, long lda, const float* W,
                            long ldw, const float* init, long ldinit, float* out, long ldo) {
  long j = 0;
  if (M == 1) {
    for (; j + 64 <= N; j += 64) mk_avx2<1, 8>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo);
    for (; j + 8 <= N; j += 8) mk_avx2<1, 1>(K, A, lda, W + j, ldw, init + j, ldinit, out + j, ldo);
    if (j < N) gemm_tail_cols(1, j, N, K, A, lda, W, ldw, init, ldinit, out, ldo);
    return;
  }
  // Row chunks keep the A rows cache resident while the W column panels stream past.
  for (long r0 = 0; r0 < M; r0 += 64) {
    const long m = M - r0 < 64 ? M - r0 : 64;
    const float* a0 = A + r0 * lda;
    const float* i0 = init + r0 * ldinit;
    float* o0 = out + r0 * ldo;
    j = 0;
    for (; j + 16 <= N; j += 16) {
      long r = 0;
      for (; r + 4 <= m; r += 4)
        mk_avx2<4, 2>(K, a0 + r * lda, lda, W + j, ldw, i0 + r * ldinit + j, ldinit, o0 + r * ldo + j, ldo);
      for (; r < m; ++r)
        mk_avx2<1, 2>(K, a0 + r * lda, lda, W + j, ldw, i0 + r * ldinit + j, ldinit, o0 + r * ldo + j, ldo);
    }
    for (; j + 8 <= N; j += 8) {
      long r = 0;
      for (; r + 4 <= m; r += 4)
        mk_avx2<4, 1>(K, a0 + r * lda, lda, W + j, ldw, i0 + r * ldinit + j, ldinit, o0 + r * ldo + j, ldo);
      for (; r < m; ++r)
        mk_avx2<1, 1>(K, a0 + r * lda, lda, W + j, ldw, i0 + r * ldinit + j, ldinit, o0 + r * ldo + j, ldo);
    }
    if (j < N) gemm_tail_cols(m, j, N, K, a0, lda, W, ldw, i0, ldinit, o0, ldo);
  }
}

// exp with ~1 ulp error on [-87, 88] (Cephes polynomial); inputs are clamped to that range,
// NaN propagates.
static inline QLE_T __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline QLE_T __m256 sigmoid_avx2(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// tanh(x) = sign(x) * (1 - e) / (1 + e), e = exp(-2|x|) in (0, 1]: no overflow, abs error ~1e-7.
static inline QLE_T __m256 tanh_avx2(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 ax = _mm256_andnot_ps(sign, x);
  const __m256 e = exp_avx2(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
  return _mm256_or_ps(t, _mm256_and_ps(sign, x));
}

static QLE_T void gates_avx2(long H, const float* u, const float* h_prev, const float* c_prev,
                             const float* gs, const float* gb, float alpha, float* h_out,
                             float* c_out) {
  const __m256 va = _mm256_set1_ps(alpha);
  const __m256 one = _mm256_set1_ps(1.0f);
  long j = 0;
  for (; j + 8 <= H; j += 8) {
    const __m256 x = _mm256_loadu_ps(u + j);
    const __m256 i = sigmoid_avx2(_mm256_fmadd_ps(_mm256_loadu_ps(gs + j), x, _mm256_loadu_ps(gb + j)));
    const __m256 f = sigmoid_avx2(_mm256_fmadd_ps(_mm256_loadu_ps(gs + H + j), x, _mm256_loadu_ps(gb + H + j)));
    const __m256 g = tanh_avx2(_mm256_fmadd_ps(_mm256_loadu_ps(gs + 2 * H + j), x, _mm256_loadu_ps(gb + 2 * H + j)));
    const __m256 o = sigmoid_avx2(_mm256_fmadd_ps(_mm256_loadu_ps(gs + 3 * H + j), x, _mm256_loadu_ps(gb + 3 * H + j)));
    const __m256 hp = _mm256_loadu_ps(h_prev + j);
    const __m256 c = _mm256_fmadd_ps(f, _mm256_loadu_ps(c_prev + j), _mm256_mul_ps(i, g));
    const __m256 ht = _mm256_mul_ps(o, tanh_avx2(c));
    __m256 h = _mm256_mul_ps(_mm256_sub_ps(one, f), ht);
    h = _mm256_fmadd_ps(f, hp, h);
    h = _mm256_fmadd_ps(va, hp, h);
    _mm256_storeu_ps(c_out + j, c);
    _mm256_storeu_ps(h_out + j, h);
  }
  for (; j < H; ++j)
    qle_cell_element(u[j], gs + j, gb + j, H, h_prev[j], c_prev[j], alpha, h_out + j, c_out + j);
}

const QleCpuKernels qle_kernels_avx2 = {"avx2", gemm_avx2, gates_avx2};
#endif
