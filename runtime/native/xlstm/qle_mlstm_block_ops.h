// mLSTMBlock / mLSTMBlockSequence: their specs and shape checks (qle_mlstm_block_ops.cc), shared by the CPU op
// there and the CUDA op (qle_mlstm_block_cuda_ops.cc). Inputs are listed in qle_mlstm_block_ops.cc.
#pragma once

#include <stdint.h>

#include "qle_contract.h"

// mLSTMBlock (seq false) / mLSTMBlockSequence.
const QleOpSpec& qle_mlstm_block_spec(bool seq);

// Sizes of a checked node (I = NH DH, BS the q/k/v head size; the step op has T = 1).
struct QleMlstmBlockDims {
  int64_t B, T, E, NH, DH, KS, BS;
};

// Every input's shape (the matrices' and their scales' in the node's mode, int4 block size `block`) and the
// sizes' bounds; the host scalars' values are read by the ops.
OrtStatusPtr qle_check_mlstm_block(const QleOpInputs& in, long block, bool seq, QleMlstmBlockDims* dims);
