// Arguments of the mLSTM kernels (CPU: qle_xlstm.h, CUDA: qle_xlstm_cuda.h). The mLSTM ops hold no
// weights, so both take the same plain struct: sizes, the scalar inputs' values, inputs and outputs
// (host pointers for the CPU kernel, device pointers for the CUDA one).
#pragma once

struct QleMlstmArgs {
  long B, T, NH, DK, DV;
  const float *q, *k;             // [B, T, NH, DK]
  const float* v;                 // [B, T, NH, DV]
  const float *i, *f;             // [B, T, NH]
  const float *C, *n, *m;         // [B, NH, DK, DV], [B, NH, DK], [B, NH, 1]
  float q_scale, k_scale, eps;
  float* Hout;                    // [B, T, NH, DV] (cell op: [B, NH, DV])
  float *C_out, *n_out, *m_out;
};
