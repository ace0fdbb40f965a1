// The xLSTM block kernels' shared pieces (qle_block_core.h).
#include "qle_block_core.h"

#include <string.h>

#include "qle_block_math.h"
#include "qle_shape.h"

namespace {
thread_local std::vector<float> t_headwise;
thread_local std::vector<int8_t> t_headwise_q;
}  // namespace

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

void qle_block_layer_norm(long M, long NH, long D, const float* v, const float* w, const float* b, float eps,
                          float* out) {
  for (long r = 0; r < M * NH; ++r) {
    const float* x = v + r * D;
    const long c0 = r % NH * D;
    float mean, std;
    qle_block_mean_std(D, x, eps, &mean, &std);
    for (long j = 0; j < D; ++j) out[r * D + j] = qle_block_normed(x[j], mean, std, w[c0 + j], b[c0 + j]);
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

const char* qle_headwise_pack(QleQMode mode, long block, const void* data, ONNXTensorElementDataType type,
                              const float* scale, long G, long NP, long K, long N, QleHeadwise* out) {
  const long heads = G * NP, size = K * N;
  out->mode = mode, out->G = G, out->NP = NP, out->K = K, out->N = N;
  if (mode == QleQMode::I8Dyn) {
    const int8_t* q = static_cast<const int8_t*>(data);
    out->q.assign(q, q + heads * size);
    for (int8_t v : out->q)
      if (v == -128) return "int8-dynamic weights must lie in [-127, 127] (symmetric int8); found -128";
    out->scale.assign(scale, scale + heads * N);
    return nullptr;
  }
  // the scale slice of one head: int8 [N]; int4 [ceil(K / bs), N]
  const long scale_slice = mode == QleQMode::I4 ? (long)qle_ceil_div(K, block) * N : N;
  out->w.resize((size_t)(heads * size));
  for (long s = 0; s < heads; ++s) {
    QleQMatrix m;
    if (const char* e = qle_qmatrix_pack(mode, block, data, type, (size_t)(s * size),
                                         scale != nullptr ? scale + s * scale_slice : nullptr, K, N, &m))
      return e;
    float* w = out->w.data() + s * size;
    for (long kk = 0; kk < K; ++kk)
      for (long j = 0; j < N; ++j)
        w[kk * N + j] = m.f != nullptr ? m.f[kk * N + j] : (float)m.q[kk * N + j] * m.scale[kk / m.block * N + j];
  }
  return nullptr;
}

void qle_headwise_product(const QleCpuKernels* k, const QleHeadwise& W, long M, const float* const* A,
                          const long* lda, const float* init, float* out, long ldo) {
  const long NP = W.NP, K = W.K, N = W.N;
  const bool f16 = W.mode == QleQMode::F16, dyn = W.mode == QleQMode::I8Dyn;
  if (t_headwise.size() < (size_t)K) t_headwise.resize((size_t)K);
  if (t_headwise_q.size() < (size_t)K) t_headwise_q.resize((size_t)K);
  float* a16 = t_headwise.data();
  int8_t* aq = t_headwise_q.data();
  for (long r = 0; r < M; ++r)
    for (long g = 0; g < W.G; ++g)
      for (long p = 0; p < NP; ++p) {
        const long head = g * NP + p;
        const float* a = A[g] + r * lda[g] + p * K;
        const float* in = init + head * N;
        float* o = out + r * ldo + head * N;
        if (dyn) {
          float s;
          k->quant_rows(1, K, a, K, aq, K, &s);
          const int8_t* w = W.q.data() + head * K * N;
          const float* ws = W.scale.data() + head * N;
          for (long j = 0; j < N; ++j) {
            int32_t acc = 0;
            for (long kk = 0; kk < K; ++kk) acc += (int32_t)aq[kk] * (int32_t)w[kk * N + j];
            o[j] = in[j] + (float)acc * s * ws[j];
          }
          continue;
        }
        if (f16) {
          k->round_f16(K, a, a16);
          a = a16;
        }
        const float* w = W.w.data() + head * K * N;
        for (long j = 0; j < N; ++j) {
          float acc = 0.0f;
          for (long kk = 0; kk < K; ++kk) acc += a[kk] * w[kk * N + j];
          o[j] = in[j] + (f16 ? qle_round_f16_scalar(acc) : acc);
        }
      }
}

void qle_block_causal_conv(long B, long T, long KS, long W, const float* conv, const float* src, long lds,
                           const float* conv_w, const float* conv_b, float* out, float* conv_out) {
  for (long b = 0; b < B; ++b) {
    const float* prev = conv + b * KS * W;
    const float* rows = src + b * T * lds;
    auto row = [&](long i) { return i < KS ? prev + i * W : rows + (i - KS) * lds; };  // row i of [conv; rows]
    for (long t = 0; t < T; ++t) {
      float* y = out + (b * T + t) * W;
      for (long c = 0; c < W; ++c) {
        float s = 0.0f;
        for (long j = 0; j < KS; ++j) s += row(t + 1 + j)[c] * conv_w[j * W + c];
        y[c] = qle_block_silu(s + conv_b[c]);
      }
    }
    float* window = conv_out + b * KS * W;
    for (long j = 0; j < KS; ++j) memmove(window + j * W, row(T + j), sizeof(float) * W);
  }
}
