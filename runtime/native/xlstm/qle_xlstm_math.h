// sLSTM and mLSTM gate maths, one unit at a time, over the lane types of qle_lanes.h: F = QleLanes<W>::F
// in the CPU lane loops (qle_xlstm.cc), float in the CUDA kernels (qle_xlstm_cuda.cu). Arguments are the
// gates' pre-activations and the unit's states; results go to the pointed-to values.
#pragma once

#include "qle_lanes.h"

// sLSTM pre-activation of one gate: (x + y_h @ R) + b.
template <typename F>
QLE_FM_INLINE F qle_fm_slstm_pre(const F& x, const F& ry, const F& b) {
  return (x + ry) + b;
}

// sLSTM unit update with the stabiliser: lfm = m + logsigmoid(f_raw);
// m' = n == 0 ? i_raw : max(i_raw, lfm); i = min(exp(i_raw - m'), 1); f = min(exp(lfm - m'), 1);
// c' = f c + i tanh(z_raw); n' = f n + i; y' = (sigmoid(o_raw) c') / n'.
template <typename F>
QLE_FM_INLINE void qle_fm_slstm(const F& i_raw, const F& f_raw, const F& z_raw, const F& o_raw,
                                const F& c, const F& n_prev, const F& m, F* y_out, F* c_out,
                                F* n_out, F* m_out) {
  const F lfm = m + qle_fm_logsigmoid(f_raw);
  const F mx = i_raw > lfm ? i_raw : lfm;
  const F m_new = n_prev == 0.0f ? i_raw : mx;
  const F ei = qle_fm_exp(i_raw - m_new), ef = qle_fm_exp(lfm - m_new);
  const F one = F{} + 1.0f;
  const F ig = ei < 1.0f ? ei : one;
  const F fg = ef < 1.0f ? ef : one;
  const F c_new = fg * c + ig * qle_fm_tanh(z_raw);
  const F n_new = fg * n_prev + ig;
  *y_out = (qle_fm_sigmoid(o_raw) * c_new) / n_new;
  *c_out = c_new;
  *n_out = n_new;
  *m_out = m_new;
}

// mLSTM gates of one head and step: lfm = logsigmoid(f_raw) + m; m' = max(lfm, i_raw);
// f~ = exp(lfm - m'); i~ = exp(i_raw - m').
template <typename F>
QLE_FM_INLINE void qle_fm_mlstm_gates(const F& i_raw, const F& f_raw, const F& m, F* f_act, F* i_act,
                                      F* m_new) {
  const F lfm = qle_fm_logsigmoid(f_raw) + m;
  const F mn = lfm > i_raw ? lfm : i_raw;
  *f_act = qle_fm_exp(lfm - mn);
  *i_act = qle_fm_exp(i_raw - mn);
  *m_new = mn;
}

// mLSTM normaliser: max(|q~ . n'|, exp(-m')) + eps.
template <typename F>
QLE_FM_INLINE F qle_fm_mlstm_denom(const F& qn, const F& m_new, const F& eps) {
  const F aq = qn < 0.0f ? -qn : qn;
  const F lo = qle_fm_exp(-m_new);
  return (aq > lo ? aq : lo) + eps;
}

