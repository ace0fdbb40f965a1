// QL-LSTM gate maths of one hidden unit, over the lane types of qle_lanes.h: F = QleLanes<W>::F in the
// CPU lane loops (qle_qllstm.cc), float in the CUDA kernels (qle_qllstm_cuda.cu).
//
//   u   = x_t @ W_x + h_{t-1} @ W_h + bias
//   i   = sigmoid(gs[0]*u + gb[0]);  f = sigmoid(gs[1]*u + gb[1])
//   g   = tanh(gs[2]*u + gb[2]);     o = sigmoid(gs[3]*u + gb[3])
//   c_t = f*c_{t-1} + i*g;  h~ = o*tanh(c_t);  h_t = f*h_{t-1} + (1-f)*h~ + alpha*h_{t-1}
#pragma once

#include "qle_lanes.h"

// Gate activations i, f, g, o of one unit; s[k], b[k]: gate k's row of gate_scale / gate_bias there.
template <typename F>
QLE_FM_INLINE void qle_fm_qllstm_gates(const F& u, const F s[4], const F b[4], F act[4]) {
  act[0] = qle_fm_sigmoid(s[0] * u + b[0]);
  act[1] = qle_fm_sigmoid(s[1] * u + b[1]);
  act[2] = qle_fm_tanh(s[2] * u + b[2]);
  act[3] = qle_fm_sigmoid(s[3] * u + b[3]);
}

// The new states from the activations act = {i, f, g, o}.
template <typename F>
QLE_FM_INLINE void qle_fm_qllstm_state(const F act[4], const F& h_prev, const F& c_prev, float alpha, F* h_out,
                                       F* c_out) {
  const F i = act[0], f = act[1], g = act[2], o = act[3];
  const F c = f * c_prev + i * g;
  const F ht = o * qle_fm_tanh(c);
  *c_out = c;
  *h_out = f * h_prev + (1.0f - f) * ht + alpha * h_prev;
}

template <typename F>
QLE_FM_INLINE void qle_fm_qllstm(const F& u, const F s[4], const F b[4], const F& h_prev, const F& c_prev,
                                 float alpha, F* h_out, F* c_out) {
  F act[4];
  qle_fm_qllstm_gates(u, s, b, act);
  qle_fm_qllstm_state(act, h_prev, c_prev, alpha, h_out, c_out);
}
