// PR-LSTM CPU kernel: the qlstm_edge::PRLSTMStep / PRLSTMSequence custom ops
// (qlstm_edge/families/prlstm/export.py has the signatures and the function bodies this matches).
//
// Per stream (batch row) and token, with n = count and L = the low K bits of n:
//   leaf:    [i; g; o] = x W_leaf + b_leaf;  c = sig(i) tanh(g);  h = sig(o) tanh(c)
//   carries: t = index of the lowest zero bit of L (0 when all K bits are set); the new block is
//            cur = leaf, then cur = combine(block[b], cur) for b = 0 .. t-1
//   prefix:  l = lowest set bit of L above t; P = combine(prefix[l], cur) if there is one, else cur
//   y = h of P, NaN when n + 1 >= 2^K (past the stream limit, as the function body);
//   state:   levels below t zeroed, level t = (cur, P), levels above kept; count = n + 1
// combine(l, r) = the merge [i; g; o; f_l; f_r] = [h_l; h_r] W_merge + b_merge,
//   c = sig(i) tanh(g) + (sig(f_l) c_l + sig(f_r) c_r), h = sig(o) tanh(c), then the R unary
//   refinements [i; g; o; f] = h W_unary[k] + b_unary[k], c = sig(i) tanh(g) + sig(f) c,
//   h = sig(o) tanh(c).
// The sequence op computes the merges of T such token updates on the same operands (as the body's
// O(log T) sweeps do): chunks of at least 16 tokens level by level, each level's merges as one
// batched product (blocks of 2^l positions bottom up, then the prefixes top down; qle_prlstm.cc
// kLevelMinT); shorter chunks token by token; long chunks in pieces of 2048 tokens.
// Past the stream limit (positions >= 2^K) both bodies give NaN outputs and count + T but
// different states (the sequence body's is not the step body's); there the native sequence op runs
// token by token, as the step op does. Weights are input-major, gate order along the last axis.
// Quantized weights (exporters/quantize.py): the three matrix products x W_leaf, [h_l; h_r] W_merge
// and h W_unary[k] run with the mode's arithmetic (qle_qmatmul: fp16 rounds the product's input
// and result to float16; int8-dynamic quantizes x, [h_l; h_r] and h per row); W_unary[k] is packed
// with its own scale slice. Biases, gate maths and states are float32 in every mode.
#pragma once

#include <stdint.h>

#include <vector>

#include "qle_cpu.h"
#include "qle_qmatrix.h"

struct QlePrlstmWeights {
  QleQMatrix leaf;                // [D, 3H]
  QleQMatrix merge;               // [2H, 5H]
  std::vector<QleQMatrix> unary;  // R slices [H, 4H]
};

// Packs W_leaf, W_merge and the R slices of W_unary (raw tensors of element types types[0..2], one
// the mode reads) with their scales (integer modes: int8 [3H], [5H], [R, 4H]; int4 [ceil(D / bs), 3H],
// [ceil(2H / bs), 5H], [R, ceil(H / bs), 4H]; null otherwise). Returns an error message or nullptr;
// qle_qmatrix_pack's lifetime rule applies.
const char* qle_prlstm_pack(QleQMode mode, long block, const void* W_leaf, const void* W_merge,
                            const void* W_unary, const ONNXTensorElementDataType types[3],
                            const float* s_leaf, const float* s_merge, const float* s_unary, long D,
                            long H, long R, QlePrlstmWeights* w);

struct QlePrlstmArgs {
  long B, T, D, H, K, R;
  const float* x;  // [B, T, D] (float32; an fp16 node's x converted by the caller)
  const float *block_h, *block_c, *prefix_h, *prefix_c;  // [B, K, H]
  const int64_t* count;                                  // [B], each in [0, INT64_MAX - T]
  const QlePrlstmWeights* w;
  const float *b_leaf, *b_merge, *b_unary;  // [3H], [5H], [R, 4H]
  float* Y;                        // [B, T, H]
  float *block_h_out, *block_c_out, *prefix_h_out, *prefix_c_out;  // [B, K, H]
  int64_t* count_out;                                              // [B]
};

// Runs rows [r0, r1) of the batch (rows are independent: callers may split them across threads).
// K must be in [1, 62].
void qle_prlstm_rows(const QleCpuKernels* k, const QlePrlstmArgs& a, long r0, long r1);
