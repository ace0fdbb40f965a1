// xLSTM CPU kernels: the qlstm_edge::sLSTMCell / sLSTMSequence / mLSTMCell / mLSTMSequence custom
// ops (qlstm_edge/families/xlstm/export.py has the signatures and the function bodies these match;
// the maths is the official xlstm package's, 2.0.4+). A cell op is the sequence op with T = 1.
//
// sLSTM, per step (H = NH * DH, gates i, f, z, o gate-major, each block head-major):
//   raw = (x + y_h @ R[g, h]) + b                        (per gate g and head h)
//   lfm = m + logsigmoid(f_raw);  m' = n == 0 ? i_raw : max(i_raw, lfm)
//   i = min(exp(i_raw - m'), 1);  f = min(exp(lfm - m'), 1)
//   c' = f c + i tanh(z_raw);  n' = f n + i;  y' = (sigmoid(o_raw) c') / n'
// mLSTM, per step, batch row and head:
//   lfm = logsigmoid(f) + m;  m' = max(lfm, i);  f~ = exp(lfm - m');  i~ = exp(i - m')
//   ik = i~ (k_scale k);  C' = f~ C + ik v^T;  n' = f~ n + ik;  q~ = q_scale q
//   h = (q~ C') / (max(|q~ . n'|, exp(-m')) + eps)
// Quantized sLSTM (exporters/quantize.py): R is a stack of 4 NH matrices [DH, DH], each packed with
// its own scale slice; y_h @ R[g, h] runs with the mode's arithmetic (qle_qmatmul: fp16 rounds y_h
// and the product to float16; int8-dynamic quantizes each head's y_h on its own). x, b, the gate
// maths and the states are float32 in every mode. The mLSTM ops hold no weights.
#pragma once

#include <vector>

#include "qle_cpu.h"
#include "qle_mlstm_args.h"
#include "qle_qmatrix.h"

// Packs the 4 NH slices of R [4, NH, DH, DH] (raw tensor of element type `type`, one the mode reads)
// into out[g * NH + h] with their scales (int8 [4, NH, DH]; int4 [4, NH, ceil(DH / bs), DH]; null
// otherwise). Returns an error message or nullptr; qle_qmatrix_pack's lifetime rule applies.
const char* qle_slstm_pack(QleQMode mode, long block, const void* R, ONNXTensorElementDataType type,
                           const float* scale, long NH, long DH, std::vector<QleQMatrix>* out);

struct QleSlstmArgs {
  long B, T, NH, DH;              // H = NH * DH
  const float* x;                 // [B, T, 4H]
  const float *y, *c, *n, *m;     // [B, H]
  const QleQMatrix* R;            // 4 NH slices [DH, DH], (gate g, head h) at g * NH + h
  const float* b;                 // [4H]
  float* Y;                       // [B, T, H]
  float *y_out, *c_out, *n_out, *m_out;  // [B, H]
};

// Rows [r0, r1) of the batch (independent: callers may split them across threads).
void qle_slstm_rows(const QleCpuKernels* k, const QleSlstmArgs& a, long r0, long r1);
// Streams (batch row, head) with flat index s = row * NH + head in [s0, s1).
void qle_mlstm_streams(const QleCpuKernels* k, const QleMlstmArgs& a, long s0, long s1);
