// The xLSTM block kernels' shared pieces (qle_block_core.h).
#include "qle_block_core.h"

#include <string.h>

#include "qle_block_math.h"
#include "qle_shape.h"

namespace {
thread_local std::vector<float> t_headwise;
thread_local std::vector<int8_t> t_headwise_q;

// The element-wise loops, each lane of W the block maths' formula (qle_block_math.h: the same bits on every
// path), compiled per lane width as the xLSTM cells' (qle_xlstm.cc).
template <int W>
QLE_FM_INLINE void silu_onto_lanes(long j, long n, const float* b, float* y) {
  typedef QleLanes<W> L;
  L::store(y + j, qle_block_silu(L::load(y + j, n) + L::load(b + j, n)), n);
}

template <int W>
QLE_FM_INLINE void skip_gated_lanes(long j, long n, const float* skip, const float* x_c, const float* z, float* h) {
  typedef QleLanes<W> L;
  L::store(h + j, qle_block_skip_gated(L::load(h + j, n), L::load(skip + j, n), L::load(x_c + j, n),
                                       L::load(z + j, n)), n);
}

template <int W, int Act>
QLE_FM_INLINE void gated_ffn_lanes(long j, long n, const float* g, const float* z, float* out) {
  typedef QleLanes<W> L;
  L::store(out + j, qle_block_gated_ffn(Act, L::load(g + j, n), L::load(z + j, n)), n);
}

// ot [N, NP] = at [K, NP] @ w [K, N, NP] per head p: ot[j, p] = sum_kk at[kk, p] w[kk, j, p], from 0 in kk order.
QLE_FM_INLINE void heads_product_body(long NP, long K, long N, const float* __restrict__ at,
                                      const float* __restrict__ w, float* __restrict__ ot) {
  for (long i = 0; i < N * NP; ++i) ot[i] = 0.0f;
  for (long kk = 0; kk < K; ++kk)
    for (long j = 0; j < N; ++j) {
      const float *x = at + kk * NP, *wj = w + (kk * N + j) * NP;
      float* o = ot + j * NP;
      for (long p = 0; p < NP; ++p) o[p] += x[p] * wj[p];
    }
}

struct Loops {
  void (*heads_product)(long, long, long, const float*, const float*, float*);
  void (*silu_onto)(long, const float*, float*);
  void (*skip_gated)(long, const float*, const float*, const float*, float*);
  void (*gated_ffn)(int, long, long, const float*, float*);
};

// Each loop: whole steps of W lanes, then the n < W rest.
#define QLE_B_LOOPS(NAME, ATTR, W)                                                                          \
  ATTR void heads_product_##NAME(long NP, long K, long N, const float* at, const float* w, float* ot) {     \
    heads_product_body(NP, K, N, at, w, ot);                                                                \
  }                                                                                                         \
  ATTR void silu_onto_##NAME(long n, const float* b, float* y) {                                            \
    long j = 0;                                                                                             \
    for (; j + W <= n; j += W) silu_onto_lanes<W>(j, W, b, y);                                              \
    if (j < n) silu_onto_lanes<W>(j, n - j, b, y);                                                          \
  }                                                                                                         \
  ATTR void skip_gated_##NAME(long n, const float* skip, const float* x_c, const float* z, float* h) {      \
    long j = 0;                                                                                             \
    for (; j + W <= n; j += W) skip_gated_lanes<W>(j, W, skip, x_c, z, h);                                  \
    if (j < n) skip_gated_lanes<W>(j, n - j, skip, x_c, z, h);                                              \
  }                                                                                                         \
  template <int Act>                                                                                        \
  ATTR void gated_ffn_##NAME##_act(long M, long U, const float* up, float* out) {                           \
    for (long r = 0; r < M; ++r) {                                                                          \
      const float *g = up + r * 2 * U, *z = g + U;                                                          \
      float* o = out + r * U;                                                                               \
      long j = 0;                                                                                           \
      for (; j + W <= U; j += W) gated_ffn_lanes<W, Act>(j, W, g, z, o);                                    \
      if (j < U) gated_ffn_lanes<W, Act>(j, U - j, g, z, o);                                                \
    }                                                                                                       \
  }                                                                                                         \
  ATTR void gated_ffn_##NAME(int act, long M, long U, const float* up, float* out) {                        \
    switch (act) {                                                                                          \
      case QLE_FFN_RELU: return gated_ffn_##NAME##_act<QLE_FFN_RELU>(M, U, up, out);                        \
      case QLE_FFN_RELU2: return gated_ffn_##NAME##_act<QLE_FFN_RELU2>(M, U, up, out);                      \
      case QLE_FFN_SIGMOID: return gated_ffn_##NAME##_act<QLE_FFN_SIGMOID>(M, U, up, out);                  \
      case QLE_FFN_SWISH: return gated_ffn_##NAME##_act<QLE_FFN_SWISH>(M, U, up, out);                      \
      case QLE_FFN_SELU: return gated_ffn_##NAME##_act<QLE_FFN_SELU>(M, U, up, out);                        \
      default: return gated_ffn_##NAME##_act<QLE_FFN_GELU>(M, U, up, out);                                  \
    }                                                                                                       \
  }                                                                                                         \
  const Loops kLoops_##NAME = {heads_product_##NAME, silu_onto_##NAME, skip_gated_##NAME, gated_ffn_##NAME};

QLE_LANES_INSTANCES(QLE_B_LOOPS)

const Loops& loops_for(const QleCpuKernels* k) { return QLE_LANES_PICK(k, kLoops_); }
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
    const long g = s / NP, p = s % NP;
    float* w = out->w.data() + g * size * NP + p;  // element [kk, j] of head (g, p) at ((g K + kk) N + j) NP + p
    for (long kk = 0; kk < K; ++kk)
      for (long j = 0; j < N; ++j)
        w[(kk * N + j) * NP] =
            m.f != nullptr ? m.f[kk * N + j] : (float)m.q[kk * N + j] * m.scale[kk / m.block * N + j];
  }
  return nullptr;
}

void qle_headwise_product(const QleCpuKernels* k, const QleHeadwise& W, long M, const float* const* A,
                          const long* lda, const float* init, float* out, long ldo) {
  const long NP = W.NP, K = W.K, N = W.N;
  const bool f16 = W.mode == QleQMode::F16;
  if (W.mode == QleQMode::I8Dyn) {  // each head's inputs quantized on their own
    if (t_headwise_q.size() < (size_t)K) t_headwise_q.resize((size_t)K);
    int8_t* aq = t_headwise_q.data();
    for (long r = 0; r < M; ++r)
      for (long g = 0; g < W.G; ++g)
        for (long p = 0; p < NP; ++p) {
          const long head = g * NP + p;
          float s;
          k->quant_rows(1, K, A[g] + r * lda[g] + p * K, K, aq, K, &s);
          const int8_t* w = W.q.data() + head * K * N;
          const float* ws = W.scale.data() + head * N;
          float* o = out + r * ldo + head * N;
          for (long j = 0; j < N; ++j) {
            int32_t acc = 0;
            for (long kk = 0; kk < K; ++kk) acc += (int32_t)aq[kk] * (int32_t)w[kk * N + j];
            o[j] = init[head * N + j] + (float)acc * s * ws[j];
          }
        }
    return;
  }
  // Every head at once, heads innermost: a's inputs transposed to [K, NP], each output's sum from 0 over the inputs
  // in order into [N, NP] (the same sums as head by head), then init added (fp16: the input and the sum rounded).
  const size_t n_in = (size_t)(NP * K), n_out = (size_t)(N * NP);
  if (t_headwise.size() < 2 * n_in + n_out) t_headwise.resize(2 * n_in + n_out);
  float *a16 = t_headwise.data(), *at = a16 + n_in, *ot = at + n_in;
  const Loops& L = loops_for(k);
  for (long r = 0; r < M; ++r)
    for (long g = 0; g < W.G; ++g) {
      const float* a = A[g] + r * lda[g];
      if (f16) {
        k->round_f16(NP * K, a, a16);
        a = a16;
      }
      for (long p = 0; p < NP; ++p)
        for (long kk = 0; kk < K; ++kk) at[kk * NP + p] = a[p * K + kk];
      L.heads_product(NP, K, N, at, W.w.data() + g * K * N * NP, ot);
      for (long p = 0; p < NP; ++p) {
        const long head = g * NP + p;
        float* o = out + r * ldo + head * N;
        for (long j = 0; j < N; ++j) {
          const float acc = ot[j * NP + p];
          o[j] = init[head * N + j] + (f16 ? qle_round_f16_scalar(acc) : acc);
        }
      }
    }
}

void qle_block_causal_conv(const QleCpuKernels* k, long B, long T, long KS, long W, const float* conv,
                           const float* src, long lds, const float* conv_w, const float* conv_b, float* out,
                           float* conv_out) {
  const Loops& L = loops_for(k);
  for (long b = 0; b < B; ++b) {
    const float* prev = conv + b * KS * W;
    const float* rows = src + b * T * lds;
    auto row = [&](long i) { return i < KS ? prev + i * W : rows + (i - KS) * lds; };  // row i of [conv; rows]
    for (long t = 0; t < T; ++t) {
      float* y = out + (b * T + t) * W;
      memset(y, 0, sizeof(float) * W);  // each channel's sum from 0 over the taps in order, as one sum would
      for (long j = 0; j < KS; ++j) {
        const float *x = row(t + 1 + j), *w = conv_w + j * W;
        for (long c = 0; c < W; ++c) y[c] += x[c] * w[c];
      }
      L.silu_onto(W, conv_b, y);
    }
    float* window = conv_out + b * KS * W;
    for (long j = 0; j < KS; ++j) memmove(window + j * W, row(T + j), sizeof(float) * W);
  }
}

void qle_block_skip_gate(const QleCpuKernels* k, long n, const float* skip, const float* x_c, const float* z,
                         float* h) {
  loops_for(k).skip_gated(n, skip, x_c, z, h);
}

void qle_block_ffn_gate(const QleCpuKernels* k, int act, long M, long U, const float* up, float* out) {
  loops_for(k).gated_ffn(act, M, U, up, out);
}
