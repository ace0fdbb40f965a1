// sLSTMBlock / sLSTMBlockSequence: their specs and shape checks (qle_slstm_block_ops.cc), shared by the CPU op
// there and the CUDA op (qle_slstm_block_cuda_ops.cc). Inputs are listed in qle_slstm_block_ops.cc.
#pragma once

#include <stdint.h>

#include "qle_contract.h"

// sLSTMBlock (seq false) / sLSTMBlockSequence.
const QleOpSpec& qle_slstm_block_spec(bool seq);

// Sizes of a checked node (E = NH DH; the step op has T = 1).
struct QleSlstmBlockDims {
  int64_t B, T, E, NH, DH, KS, U;
};

// Every input's shape (the matrices' and their scales' in the node's mode, int4 block size `block`) and the
// sizes' bounds.
OrtStatusPtr qle_check_slstm_block(const QleOpInputs& in, long block, bool seq, QleSlstmBlockDims* dims);
