// The xLSTM block kernels' maths, shared by the CPU kernels (qle_block_core.cc, qle_large_block.cc,
// qle_mlstm_block.cc, qle_slstm_block.cc) and the CUDA ones (qle_block_cuda.cu, qle_<block>_block_cuda.cu): one
// row's norm statistics, summed in index order, and the element-wise formulas of the function bodies
// (qlstm_edge/families/xlstm/block_ops.py), on the float instances of the lane maths (qle_lanes.h;
// __host__ __device__ under nvcc, built there with --fmad=false and IEEE sqrt and division, so both sides compute
// the same bits).
#pragma once

#include <math.h>

#include "qle_lanes.h"

// rms(x) = sqrt(mean(x^2) + eps) of x [n].
QLE_FM_INLINE float qle_block_rms(long n, const float* x, float eps) {
  float sq = 0.0f;
  for (long j = 0; j < n; ++j) sq += x[j] * x[j];
  return sqrtf(sq / (float)n + eps);
}

// The layer norm statistics of x [n]: its mean and sqrt(var + eps).
QLE_FM_INLINE void qle_block_mean_std(long n, const float* x, float eps, float* mean, float* std) {
  float mu = 0.0f, var = 0.0f;
  for (long j = 0; j < n; ++j) mu += x[j];
  mu /= (float)n;
  for (long j = 0; j < n; ++j) var += (x[j] - mu) * (x[j] - mu);
  *mean = mu;
  *std = sqrtf(var / (float)n + eps);
}

// An RMS-normed element: x / rms * w + b.
QLE_FM_INLINE float qle_block_rms_scaled(float x, float rms, float w, float b) { return x / rms * w + b; }

// The soft cap c tanh(g / c), or g where c is 0 (no cap).
QLE_FM_INLINE float qle_block_cap(float g, float c) { return c == 0.0f ? g : c * qle_fm_tanh(g / c); }

// The element formulas below are templates over the lane type F (qle_lanes.h: float, the CUDA kernels and the
// CPU's scalar loops; QleLanes<W>::F, the CPU's vector loops in qle_block_core.cc): every lane does the same
// operations in the same order, so every path returns the same bits.

// A layer-normed element: (x - mean) / std * w + b.
template <typename F>
QLE_FM_INLINE F qle_block_normed(const F& x, float mean, float std, const F& w, const F& b) {
  return (x - mean) / std * w + b;
}

// The output-gated head norm of one element: sigmoid(o) ((x - mean) / std * w + b).
template <typename F>
QLE_FM_INLINE F qle_block_gated_norm(const F& o, const F& x, float mean, float std, const F& w, const F& b) {
  return qle_fm_sigmoid(o) * qle_block_normed(x, mean, std, w, b);
}

// silu(v) = v sigmoid(v).
template <typename F>
QLE_FM_INLINE F qle_block_silu(const F& v) {
  return v * qle_fm_sigmoid(v);
}

// The mLSTM block's output gate of one element: (hn + skip x_c) silu(z), hn the head-normed h.
template <typename F>
QLE_FM_INLINE F qle_block_skip_gated(const F& hn, const F& skip, const F& x_c, const F& z) {
  return (hn + skip * x_c) * qle_block_silu(z);
}

// erf(x) by Abramowitz and Stegun 7.1.26: 1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-x^2),
// t = 1 / (1 + p |x|), odd in x: |error| <= 1.5e-7 in exact arithmetic, 5.8e-7 in this float32 evaluation
// (measured on [-8, 8]; libm's erff: 5e-8), 4.7e-7 on gelu(g). One source for the CPU and CUDA kernels (libm's
// erff and CUDA's are different functions).
template <typename F>
QLE_FM_INLINE F qle_block_erf(const F& x) {
  typedef typename QleFm<F>::I I;
  const F zero = {};
  const F ax = qle_fm_from_bits<F>(qle_fm_bits<I>(x) & 0x7fffffff), t = 1.0f / (1.0f + 0.3275911f * ax);
  const F poly =
      t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const F e = 1.0f - poly * qle_fm_exp(-(ax * ax));
  return x < zero ? -e : e;
}

// The sLSTM block FFN's activations, in the order of the op's ffn_act values (qle_slstm_block_ops.cc;
// qlstm_edge/families/xlstm/ops.py FFN_ACTIVATIONS), each as block_ops.ffn_activation's nodes compute it.
enum QleFfnAct { QLE_FFN_GELU, QLE_FFN_RELU, QLE_FFN_RELU2, QLE_FFN_SIGMOID, QLE_FFN_SWISH, QLE_FFN_SELU };
constexpr float kSeluAlpha = 1.6732632423543772f, kSeluGamma = 1.0507009873554805f;  // torch's (block_ops.py)

template <typename F>
QLE_FM_INLINE F qle_block_ffn_act(int act, const F& g) {
  const F zero = {};
  switch (act) {
    case QLE_FFN_RELU: return g > zero ? g : zero;
    case QLE_FFN_RELU2: return g > zero ? g * g : zero;
    case QLE_FFN_SIGMOID: return qle_fm_sigmoid(g);
    case QLE_FFN_SWISH: return qle_block_silu(g);
    case QLE_FFN_SELU:  // gamma g, or gamma (alpha exp(g) - alpha) at and below 0 (onnx's Selu)
      return g > zero ? kSeluGamma * g : kSeluGamma * (kSeluAlpha * qle_fm_exp(g) - kSeluAlpha);
    default: return g * 0.5f * (qle_block_erf(g / 1.41421356237309515f) + 1.0f);  // gelu: g (erf(g / sqrt 2) + 1) / 2
  }
}

// The gated activation of a block's FFN: act(g) z (xLSTMLarge's: swish, the SiLU).
template <typename F>
QLE_FM_INLINE F qle_block_gated_ffn(int act, const F& g, const F& z) {
  return qle_block_ffn_act(act, g) * z;
}
