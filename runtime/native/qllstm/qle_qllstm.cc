// QL-LSTM CPU kernel (see qle_qllstm.h): matrix products through qle_qmatmul (the qle_cpu.h kernel
// table, per quantization mode), gate maths through per-ISA lane loops compiled from one source
// (qle_qllstm_math.h).
#include "qle_qllstm.h"

#include <string.h>

#include "qle_qllstm_math.h"

namespace {

// Activations of units [j, j + n), n <= W, of one row.
template <int W>
QLE_FM_INLINE void activations(long H, long j, long n, const float* u, const float* gs, const float* gb,
                               typename QleLanes<W>::F act[4]) {
  typedef QleLanes<W> L;
  typename L::F s[4], b[4];
  for (long g = 0; g < 4; ++g) {
    s[g] = L::load(gs + g * H + j, n);
    b[g] = L::load(gb + g * H + j, n);
  }
  qle_fm_qllstm_gates(L::load(u + j, n), s, b, act);
}

// New states of units [j, j + n) from their activations.
template <int W>
QLE_FM_INLINE void states(long j, long n, const typename QleLanes<W>::F act[4], const float* h_prev,
                          const float* c_prev, float alpha, float* h_out, float* c_out) {
  typedef QleLanes<W> L;
  typename L::F h, c;
  qle_fm_qllstm_state(act, L::load(h_prev + j, n), L::load(c_prev + j, n), alpha, &h, &c);
  L::store(c_out + j, c, n);
  L::store(h_out + j, h, n);
}

// The loop over H units for W lanes: full vectors, each pass computing the next vector's activations
// before this vector's states (independent work, so the CPU overlaps the activations' exp chains with
// the states' tanh), then one partial vector.
template <int W>
QLE_FM_INLINE void gates_loop(long H, const float* u, const float* h_prev, const float* c_prev, const float* gs,
                              const float* gb, float alpha, float* h_out, float* c_out) {
  typedef typename QleLanes<W>::F F;
  long j = 0;
  if (H >= W) {
    F act[4];
    activations<W>(H, 0, W, u, gs, gb, act);
    for (; j + 2 * W <= H; j += W) {
      F next[4];
      activations<W>(H, j + W, W, u, gs, gb, next);
      states<W>(j, W, act, h_prev, c_prev, alpha, h_out, c_out);
      for (int g = 0; g < 4; ++g) act[g] = next[g];
    }
    states<W>(j, W, act, h_prev, c_prev, alpha, h_out, c_out);
    j += W;
  }
  if (j < H) {
    F act[4];
    activations<W>(H, j, H - j, u, gs, gb, act);
    states<W>(j, H - j, act, h_prev, c_prev, alpha, h_out, c_out);
  }
}

typedef void (*GatesFn)(long, const float*, const float*, const float*, const float*, const float*, float, float*,
                        float*);

// gates_loop compiled for one ISA (target attribute ATTR) and lane width W.
#define QLE_QL_GATES(NAME, ATTR, W)                                                                        \
  ATTR QLE_FM_SCHED void gates_##NAME(long H, const float* u, const float* h_prev, const float* c_prev,    \
                                      const float* gs, const float* gb, float alpha, float* h_out,         \
                                      float* c_out) {                                                      \
    gates_loop<W>(H, u, h_prev, c_prev, gs, gb, alpha, h_out, c_out);                                     \
  }

QLE_LANES_INSTANCES(QLE_QL_GATES)

GatesFn gates_for(const QleCpuKernels* k) { return QLE_LANES_PICK(k, gates_); }

}  // namespace

const char* qle_qllstm_pack(QleQMode mode, long block, const void* W_x, ONNXTensorElementDataType tx,
                            const void* W_h, ONNXTensorElementDataType th, const float* sx, const float* sh,
                            long D, long H, QleQllstmWeights* w) {
  if (const char* e = qle_qmatrix_pack(mode, block, W_x, tx, 0, sx, D, H, &w->wx)) return e;
  return qle_qmatrix_pack(mode, block, W_h, th, 0, sh, H, H, &w->wh);
}

void qle_qllstm_gates(const QleCpuKernels* k, long H, const float* u, const float* h_prev, const float* c_prev,
                      const float* gs, const float* gb, float alpha, float* h_out, float* c_out) {
  gates_for(k)(H, u, h_prev, c_prev, gs, gb, alpha, h_out, c_out);
}

void qle_qllstm_cell_rows(const QleCpuKernels* k, const QleQllstmArgs& a, long r0, long r1) {
  const long m = r1 - r0, H = a.H;
  const GatesFn gates = gates_for(k);
  float* u = a.h_out + r0 * H;
  qle_qmatmul(k, a.w->wx, m, a.x + r0 * a.D, a.D, a.bias, 0, u, H);
  qle_qmatmul(k, a.w->wh, m, a.h + r0 * H, H, u, H, u, H);
  for (long r = r0; r < r1; ++r)
    gates(H, a.h_out + r * H, a.h + r * H, a.c + r * H, a.gs, a.gb, a.alpha, a.h_out + r * H, a.c_out + r * H);
}

void qle_qllstm_project_rows(const QleCpuKernels* k, const QleQllstmArgs& a, long r0, long r1) {
  qle_qmatmul(k, a.w->wx, r1 - r0, a.x + r0 * a.D, a.D, a.bias, 0, a.Y + r0 * a.H, a.H);
}

void qle_qllstm_recur_rows(const QleCpuKernels* k, const QleQllstmArgs& a, long b0, long b1) {
  const long m = b1 - b0, H = a.H, ldy = a.T * H;
  const GatesFn gates = gates_for(k);
  float* y0 = a.Y + b0 * ldy;
  float* c = a.c_out + b0 * H;
  for (long t = 0; t < a.T; ++t) {
    const float* hp = t == 0 ? a.h + b0 * H : y0 + (t - 1) * H;
    const long ld_hp = t == 0 ? H : ldy;
    const float* cp = t == 0 ? a.c + b0 * H : c;
    float* u = y0 + t * H;
    qle_qmatmul(k, a.w->wh, m, hp, ld_hp, u, ldy, u, ldy);
    for (long r = 0; r < m; ++r)
      gates(H, u + r * ldy, hp + r * ld_hp, cp + r * H, a.gs, a.gb, a.alpha, u + r * ldy, c + r * H);
  }
  for (long r = 0; r < m; ++r) memcpy(a.h_out + (b0 + r) * H, y0 + r * ldy + (a.T - 1) * H, sizeof(float) * H);
}
