// QL-LSTM CPU kernel: the qlstm_edge::QLLSTMCell / QLLSTMSequence custom ops
// (qlstm_edge/families/qllstm has the signatures and the function bodies this matches).
//
// Per step: u = x_t @ W_x + h_{t-1} @ W_h + bias, then the gate maths of qle_qllstm_math.h.
// Quantized weights (exporters/quantize.py): both products run with the mode's arithmetic
// (qle_qmatmul: fp16 rounds the product's input and result to float16; int8-dynamic quantizes x and
// h per row); bias, gate maths and states are float32 in every mode.
#pragma once

#include "qle_cpu.h"
#include "qle_qmatrix.h"

struct QleQllstmWeights {
  QleQMatrix wx;  // [D, H]
  QleQMatrix wh;  // [H, H]
};

// Packs W_x and W_h (raw tensors of element types tx, th, ones the mode reads) with their scales
// (integer modes: int8 [H]; int4 [ceil(D / bs), H], [ceil(H / bs), H]; null otherwise). Returns an
// error message or nullptr; qle_qmatrix_pack's lifetime rule applies.
const char* qle_qllstm_pack(QleQMode mode, long block, const void* W_x, ONNXTensorElementDataType tx,
                            const void* W_h, ONNXTensorElementDataType th, const float* sx, const float* sh,
                            long D, long H, QleQllstmWeights* w);

struct QleQllstmArgs {
  long B, T, D, H;
  const QleQllstmWeights* w;
  const float* x;                // [B, T, D] (float32; an fp16 node's x converted by the caller)
  const float *h, *c;            // [B, H]
  const float* bias;             // [H]
  const float *gs, *gb;          // gate_scale, gate_bias [4, H]
  float alpha;
  float* Y;                      // [B, T, H] (sequence only)
  float *h_out, *c_out;          // [B, H]
};

// Gate maths of one row of H units. u may alias h_out and c_prev may alias c_out; h_prev must not
// alias h_out. Lane width per the kernel table k (qle_lanes_isa_level); every width gives the same values.
void qle_qllstm_gates(const QleCpuKernels* k, long H, const float* u, const float* h_prev, const float* c_prev,
                      const float* gs, const float* gb, float alpha, float* h_out, float* c_out);

// QLLSTMCell, batch rows [r0, r1) (independent: callers may split them across threads).
void qle_qllstm_cell_rows(const QleCpuKernels* k, const QleQllstmArgs& a, long r0, long r1);
// QLLSTMSequence, first pass: Y[r] = x[r] @ W_x + bias for the flattened rows r in [r0, r1) of [B * T, D].
void qle_qllstm_project_rows(const QleCpuKernels* k, const QleQllstmArgs& a, long r0, long r1);
// QLLSTMSequence, second pass over batch rows [b0, b1): Y[:, t] (holding x_t @ W_x + bias) is
// overwritten with h_t; h_out, c_out get the last step's states. Needs T >= 1.
void qle_qllstm_recur_rows(const QleCpuKernels* k, const QleQllstmArgs& a, long b0, long b1);
