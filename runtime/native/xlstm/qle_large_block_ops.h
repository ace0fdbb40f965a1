// xLSTMLargeBlock / xLSTMLargeBlockSequence: their specs and shape checks (qle_large_block_ops.cc), shared by the
// CPU op there and the CUDA op (qle_large_block_cuda_ops.cc). Inputs are listed in qle_large_block_ops.cc.
#pragma once

#include <stdint.h>

#include "qle_contract.h"

// xLSTMLargeBlock (seq false) / xLSTMLargeBlockSequence.
const QleOpSpec& qle_large_block_spec(bool seq);

// Sizes of a checked node (QK = NH DK, V = NH DV; the step op has T = 1).
struct QleLargeBlockDims {
  int64_t B, T, E, NH, DK, DV, U;
};

// Every input's shape (the matrices' and their scales' in the node's mode, int4 block size `block`) and the
// sizes' bounds; the host scalars' values are read by the ops.
OrtStatusPtr qle_check_large_block(const QleOpInputs& in, long block, bool seq, QleLargeBlockDims* dims);
