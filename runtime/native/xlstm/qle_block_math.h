// The xLSTM block kernels' maths, shared by the CPU kernels (qle_block_core.cc, qle_large_block.cc) and the CUDA
// ones (qle_block_cuda.cu, qle_large_block_cuda.cu): one row's norm statistics, summed in index order, and the
// element-wise formulas of the function bodies (qlstm_edge/families/xlstm/block_ops.py), on the float instances of
// the lane maths (qle_lanes.h; __host__ __device__ under nvcc, built there with --fmad=false and IEEE sqrt and
// division, so both sides compute the same bits).
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

// The output-gated head norm of one element: sigmoid(o) ((x - mean) / std * w + b).
QLE_FM_INLINE float qle_block_gated_norm(float o, float x, float mean, float std, float w, float b) {
  return qle_fm_sigmoid(o) * ((x - mean) / std * w + b);
}

// The gated SiLU of the FFN: silu(g) z = g sigmoid(g) z.
QLE_FM_INLINE float qle_block_gated_silu(float g, float z) { return g * qle_fm_sigmoid(g) * z; }
