// PR-LSTM gate maths, one unit at a time, over the lane types of qle_lanes.h: F = QleLanes<W>::F in the
// CPU lane loops (qle_prlstm.cc), float in the CUDA kernels (qle_prlstm_cuda.cu). Arguments are the gates'
// pre-activations (z_*) and the unit's states; results go to the pointed-to values.
#pragma once

#include "qle_lanes.h"

// PR-LSTM leaf: c = sig(i) tanh(g); h = sig(o) tanh(c).
template <typename F>
QLE_FM_INLINE void qle_fm_pr_leaf(const F& zi, const F& zg, const F& zo, F* h, F* c) {
  const F cj = qle_fm_sigmoid(zi) * qle_fm_tanh(zg);
  *c = cj;
  *h = qle_fm_sigmoid(zo) * qle_fm_tanh(cj);
}

// PR-LSTM merge (first half of combine): c = sig(i) tanh(g) + (sig(f_l) c_l + sig(f_r) c_r);
// h = sig(o) tanh(c).
template <typename F>
QLE_FM_INLINE void qle_fm_pr_merge(const F& zi, const F& zg, const F& zo, const F& zfl, const F& zfr,
                                   const F& c_l, const F& c_r, F* h, F* c) {
  const F ig = qle_fm_sigmoid(zi) * qle_fm_tanh(zg);
  const F fc = qle_fm_sigmoid(zfl) * c_l + qle_fm_sigmoid(zfr) * c_r;
  const F cj = ig + fc;
  *c = cj;
  *h = qle_fm_sigmoid(zo) * qle_fm_tanh(cj);
}

// PR-LSTM unary refinement (the rest of combine): c' = sig(i) tanh(g) + sig(f) c; h = sig(o) tanh(c').
template <typename F>
QLE_FM_INLINE void qle_fm_pr_unary(const F& zi, const F& zg, const F& zo, const F& zf, const F& c,
                                   F* h, F* c_out) {
  const F cj = qle_fm_sigmoid(zi) * qle_fm_tanh(zg) + qle_fm_sigmoid(zf) * c;
  *c_out = cj;
  *h = qle_fm_sigmoid(zo) * qle_fm_tanh(cj);
}

