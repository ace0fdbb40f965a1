// Per-element QL-LSTM gate maths, shared by the CPU scalar path and the CUDA kernels.
//
//   u   = x_t @ W_x + h_{t-1} @ W_h + bias
//   i   = sigmoid(gs[0]*u + gb[0]);  f = sigmoid(gs[1]*u + gb[1])
//   g   = tanh(gs[2]*u + gb[2]);     o = sigmoid(gs[3]*u + gb[3])
//   c_t = f*c_{t-1} + i*g;  h~ = o*tanh(c_t);  h_t = f*h_{t-1} + (1-f)*h~ + alpha*h_{t-1}
#pragma once

#include <math.h>

#if defined(__CUDACC__)
#define QLE_HD __host__ __device__
#else
#define QLE_HD
#endif

QLE_HD inline float qle_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

QLE_HD inline float qle_tanh(float x) { return tanhf(x); }

// One hidden unit of one step. gs/gb point at column j of row 0 of gate_scale/gate_bias;
// the four gate rows are `stride` floats apart (stride = H).
QLE_HD inline void qle_cell_element(float u, const float* gs, const float* gb, long stride,
                                    float h_prev, float c_prev, float alpha,
                                    float* h_out, float* c_out) {
  const float i = qle_sigmoid(gs[0] * u + gb[0]);
  const float f = qle_sigmoid(gs[stride] * u + gb[stride]);
  const float g = qle_tanh(gs[2 * stride] * u + gb[2 * stride]);
  const float o = qle_sigmoid(gs[3 * stride] * u + gb[3 * stride]);
  const float c = f * c_prev + i * g;
  const float ht = o * qle_tanh(c);
  *c_out = c;
  *h_out = f * h_prev + (1.0f - f) * ht + alpha * h_prev;
}
