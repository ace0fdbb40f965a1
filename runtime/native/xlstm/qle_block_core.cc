// The xLSTM block kernels' shared pieces (qle_block_core.h).
#include "qle_block_core.h"

#include <string.h>

#include "qle_block_math.h"

void qle_block_panels(QleBlockMatrix* m) {
  const long K = m->w.K, N = m->w.N;
  m->panels.resize((size_t)(K * N));
  for (long j0 = 0; j0 < N; j0 += kQlePanel) {
    const long nc = N - j0 < kQlePanel ? N - j0 : kQlePanel;
    float* p = m->panels.data() + K * j0;
    for (long kk = 0; kk < K; ++kk) memcpy(p + kk * nc, m->w.f + kk * N + j0, sizeof(float) * nc);
  }
}

void qle_block_rms_norm(long M, long E, const float* v, const float* w, const float* b, float eps, float* out) {
  for (long r = 0; r < M; ++r) {
    const float* x = v + r * E;
    float* y = out + r * E;
    const float rms = qle_block_rms(E, x, eps);
    for (long j = 0; j < E; ++j) y[j] = qle_block_rms_scaled(x[j], rms, w[j], b[j]);
  }
}

void qle_block_soft_cap(long n, float c, float* g) {
  if (c == 0.0f) return;
  for (long j = 0; j < n; ++j) g[j] = qle_block_cap(g[j], c);
}

void qle_block_columns(long M, const float* src, long lds, long c0, long n, float* dst) {
  for (long r = 0; r < M; ++r) memcpy(dst + r * n, src + r * lds + c0, sizeof(float) * n);
}

void qle_block_product(const QleCpuKernels* k, const QleBlockMatrix& W, long M, const float* A, long lda,
                       const float* init, float* out, long ldo) {
  if (W.panels.empty()) {
    qle_qmatmul(k, W.w, M, A, lda, init, 0, out, ldo);
    return;
  }
  const long K = W.w.K, N = W.w.N;
  for (long j0 = 0; j0 < N; j0 += kQlePanel) {
    const long nc = N - j0 < kQlePanel ? N - j0 : kQlePanel;
    k->gemm(M, nc, K, A, lda, W.panels.data() + K * j0, nc, init + j0, 0, out + j0, ldo);
  }
}

void qle_block_add(long n, const float* a, float* out) {
  for (long j = 0; j < n; ++j) out[j] = a[j] + out[j];
}
