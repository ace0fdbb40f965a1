// xLSTM CPU kernels (see qle_xlstm.h): the sLSTM's block-diagonal recurrent product through
// qle_qmatmul (the qle_cpu.h kernel table, per quantization mode); gate maths and the mLSTM
// matrix-memory update through per-ISA lane loops compiled from one source (qle_xlstm_math.h).
#include "qle_xlstm.h"

#include <string.h>

#include <vector>

#include "qle_xlstm_math.h"
#include "qle_shape.h"

namespace {

// sLSTM gates of units [j, j + n), n <= W; ry = y_h @ R (per gate and head), gate-major [4H].
// c, n_, m may alias c_out, n_out, m_out.
template <int W>
QLE_FM_INLINE void slstm_lanes(long H, long j, long n, const float* x, const float* ry,
                               const float* b, const float* c, const float* n_, const float* m,
                               float* y_out, float* c_out, float* n_out, float* m_out) {
  typedef QleLanes<W> L;
  typedef typename L::F F;
  F pre[4];
  for (long g = 0; g < 4; ++g)
    pre[g] = qle_fm_slstm_pre(L::load(x + g * H + j, n), L::load(ry + g * H + j, n), L::load(b + g * H + j, n));
  F y_new, c_new, n_new, m_new;
  qle_fm_slstm(pre[0], pre[1], pre[2], pre[3], L::load(c + j, n), L::load(n_ + j, n), L::load(m + j, n),
               &y_new, &c_new, &n_new, &m_new);
  L::store(y_out + j, y_new, n);
  L::store(c_out + j, c_new, n);
  L::store(n_out + j, n_new, n);
  L::store(m_out + j, m_new, n);
}

// Columns [j, j + S W) of one mLSTM head's memory (S W-lane vectors; the last holds n <= W columns):
// C_out = f C + ik v^T (ik [DK], v [DV]) and h_num = q C_out, summed over the rows in order. Column strips keep
// the S h_num vectors in registers over all DK rows, so each row costs its own loads and stores only.
template <int W, int S>
QLE_FM_INLINE void mlstm_memory_strip(long DK, long DV, long j, long n, float f, const float* ik, const float* v,
                                      const float* C, const float* q, float* C_out, float* h_num) {
  typedef QleLanes<W> L;
  typedef typename L::F F;
  F vs[S], h[S];
  for (int s = 0; s < S; ++s) {
    vs[s] = L::load(v + j + s * W, s == S - 1 ? n : W);
    h[s] = F{};
  }
  for (long d = 0; d < DK; ++d) {
    const float a = ik[d], qd = q[d];
    for (int s = 0; s < S; ++s) {
      const long at = d * DV + j + s * W, ns = s == S - 1 ? n : W;
      const F c = f * L::load(C + at, ns) + a * vs[s];
      L::store(C_out + at, c, ns);
      h[s] = h[s] + qd * c;
    }
  }
  for (int s = 0; s < S; ++s) L::store(h_num + j + s * W, h[s], s == S - 1 ? n : W);
}

// One mLSTM head's memory, strips of 4 vectors, then single vectors. C may alias C_out (each element is read
// before it is written).
template <int W>
QLE_FM_INLINE void mlstm_memory_lanes(long DK, long DV, float f, const float* ik, const float* v, const float* C,
                                      const float* q, float* C_out, float* h_num) {
  long j = 0;
  for (; j + 4 * W <= DV; j += 4 * W) mlstm_memory_strip<W, 4>(DK, DV, j, W, f, ik, v, C, q, C_out, h_num);
  for (; j < DV; j += W)
    mlstm_memory_strip<W, 1>(DK, DV, j, DV - j < W ? DV - j : W, f, ik, v, C, q, C_out, h_num);
}

struct Loops {
  void (*slstm)(long, const float*, const float*, const float*, const float*, const float*,
                const float*, float*, float*, float*, float*);
  void (*mlstm_memory)(long, long, float, const float*, const float*, const float*, const float*,
                       float*, float*);
};

#define QLE_X_LOOPS(NAME, ATTR, W)                                                                \
  ATTR void slstm_##NAME(long H, const float* x, const float* ry, const float* b, const float* c, \
                         const float* n, const float* m, float* y_out, float* c_out,              \
                         float* n_out, float* m_out) {                                            \
    long j = 0;                                                                                   \
    for (; j + W <= H; j += W) slstm_lanes<W>(H, j, W, x, ry, b, c, n, m, y_out, c_out, n_out, m_out); \
    if (j < H) slstm_lanes<W>(H, j, H - j, x, ry, b, c, n, m, y_out, c_out, n_out, m_out);     \
  }                                                                                               \
  ATTR void mlstm_memory_##NAME(long DK, long DV, float f, const float* ik, const float* v,       \
                                const float* C, const float* q, float* C_out, float* h_num) {     \
    mlstm_memory_lanes<W>(DK, DV, f, ik, v, C, q, C_out, h_num);                                  \
  }                                                                                               \
  const Loops kLoops_##NAME = {slstm_##NAME, mlstm_memory_##NAME};

QLE_LANES_INSTANCES(QLE_X_LOOPS)

const Loops& loops_for(const QleCpuKernels* k) { return QLE_LANES_PICK(k, kLoops_); }

thread_local std::vector<float> t_scratch;

float* scratch(size_t n) {
  if (t_scratch.size() < n) t_scratch.resize(n);
  return t_scratch.data();
}

}  // namespace

const char* qle_slstm_pack(QleQMode mode, long block, const void* R, ONNXTensorElementDataType type,
                           const float* scale, long NH, long DH, std::vector<QleQMatrix>* out) {
  // scale slice: int8 [DH]; int4 [ceil(DH / bs), DH]
  const long scale_slice = mode == QleQMode::I4 ? (long)qle_ceil_div(DH, block) * DH : DH;
  out->resize((size_t)(4 * NH));
  for (long s = 0; s < 4 * NH; ++s) {
    const float* sc = scale != nullptr ? scale + s * scale_slice : nullptr;
    if (const char* e = qle_qmatrix_pack(mode, block, R, type, (size_t)(s * DH * DH), sc, DH, DH, &(*out)[(size_t)s]))
      return e;
  }
  return nullptr;
}

void qle_slstm_rows(const QleCpuKernels* k, const QleSlstmArgs& a, long r0, long r1) {
  const long NH = a.NH, DH = a.DH, H = NH * DH, T = a.T;
  if (H == 0) return;
  const Loops& lp = loops_for(k);
  float* ry = scratch((size_t)(4 * H + DH));
  float* zero = ry + 4 * H;
  memset(zero, 0, sizeof(float) * DH);
  for (long r = r0; r < r1; ++r) {
    const float *y = a.y + r * H, *c = a.c + r * H, *n = a.n + r * H, *m = a.m + r * H;
    float *y_out = a.y_out + r * H, *c_out = a.c_out + r * H, *n_out = a.n_out + r * H,
          *m_out = a.m_out + r * H;
    if (T == 0) {
      memcpy(y_out, y, sizeof(float) * H);
      memcpy(c_out, c, sizeof(float) * H);
      memcpy(n_out, n, sizeof(float) * H);
      memcpy(m_out, m, sizeof(float) * H);
      continue;
    }
    for (long t = 0; t < T; ++t) {
      for (long g = 0; g < 4; ++g)
        for (long h = 0; h < NH; ++h)
          qle_qmatmul(k, a.R[g * NH + h], 1, y + h * DH, DH, zero, 0, ry + g * H + h * DH, DH);
      lp.slstm(H, a.x + (r * T + t) * 4 * H, ry, a.b, c, n, m, y_out, c_out, n_out, m_out);
      if (a.Y != nullptr) memcpy(a.Y + (r * T + t) * H, y_out, sizeof(float) * H);
      y = y_out;
      c = c_out;
      n = n_out;
      m = m_out;
    }
  }
}

void qle_mlstm_streams(const QleCpuKernels* k, const QleMlstmArgs& a, long s0, long s1) {
  const long NH = a.NH, DK = a.DK, DV = a.DV, T = a.T;
  const Loops& lp = loops_for(k);
  float* buf = scratch((size_t)(2 * DK));
  float* ik = buf;
  float* qs = buf + DK;
  for (long s = s0; s < s1; ++s) {
    const long r = s / NH, h = s % NH;
    const float* C = a.C + s * DK * DV;
    const float* n = a.n + s * DK;
    float m = a.m[s];
    float* C_out = a.C_out + s * DK * DV;
    float* n_out = a.n_out + s * DK;
    if (T == 0) {
      memcpy(C_out, C, sizeof(float) * DK * DV);
      memcpy(n_out, n, sizeof(float) * DK);
    }
    for (long t = 0; t < T; ++t) {
      const long g = (r * T + t) * NH + h;  // index into [B, T, NH]
      const float* q = a.q + g * DK;
      const float* kk = a.k + g * DK;
      const float* v = a.v + g * DV;
      float f_act, i_act, m_new;
      qle_fm_mlstm_gates(a.i[g], a.f[g], m, &f_act, &i_act, &m_new);
      float qn = 0.0f;
      for (long d = 0; d < DK; ++d) {
        ik[d] = i_act * (kk[d] * a.k_scale);
        qs[d] = q[d] * a.q_scale;
        n_out[d] = f_act * n[d] + ik[d];
        qn += qs[d] * n_out[d];
      }
      float* hv = a.Hout + g * DV;
      lp.mlstm_memory(DK, DV, f_act, ik, v, C, qs, C_out, hv);
      const float denom = qle_fm_mlstm_denom(qn, m_new, a.eps);
      for (long j = 0; j < DV; ++j) hv[j] = hv[j] / denom;
      C = C_out;
      n = n_out;
      m = m_new;
    }
    a.m_out[s] = m;
  }
}
