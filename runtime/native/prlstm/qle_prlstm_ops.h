// Custom ops of the PR-LSTM and xLSTM families (qle_family_ops.cc), for the library's domain.
#pragma once

#include <vector>

struct OrtCustomOp;

// Appends the CPU ops PRLSTMStep, PRLSTMSequence, sLSTMCell, sLSTMSequence, mLSTMCell and
// mLSTMSequence (static objects, valid for the life of the process).
void qle_family_ops(std::vector<const OrtCustomOp*>* out);
// Appends the names of those ops.
void qle_family_op_names(std::vector<const char*>* out);
// Appends the names of those that also take quantized nodes (a quant_mode attribute): PRLSTMStep,
// PRLSTMSequence, sLSTMCell, sLSTMSequence (the mLSTM ops hold no weights: float32 nodes only).
void qle_family_quantized_op_names(std::vector<const char*>* out);
// Number of Compute calls of those ops in this process.
unsigned long long qle_family_compute_calls();
