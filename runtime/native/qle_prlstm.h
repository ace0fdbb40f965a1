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
// The sequence op runs the same token update T times (the body's O(log T) sweeps compute the same
// merges on the same operands). Past the stream limit (positions >= 2^K) both bodies give NaN
// outputs and count + T but different states (the sequence body's is not the step body's); the
// native sequence op keeps going as the step op does. Weights are input-major, gate order along
// the last axis.
#pragma once

#include <stdint.h>

#include "qle_cpu.h"

struct QlePrlstmArgs {
  long B, T, D, H, K, R;
  const float* x;  // [B, T, D]
  const float *block_h, *block_c, *prefix_h, *prefix_c;  // [B, K, H]
  const int64_t* count;                                  // [B], each in [0, INT64_MAX - T]
  const float *W_leaf, *b_leaf;    // [D, 3H], [3H]
  const float *W_merge, *b_merge;  // [2H, 5H], [5H]
  const float *W_unary, *b_unary;  // [R, H, 4H], [R, 4H]
  float* Y;                        // [B, T, H]
  float *block_h_out, *block_c_out, *prefix_h_out, *prefix_c_out;  // [B, K, H]
  int64_t* count_out;                                              // [B]
};

// Runs rows [r0, r1) of the batch (rows are independent: callers may split them across threads).
// K must be in [1, 62].
void qle_prlstm_rows(const QleCpuKernels* k, const QlePrlstmArgs& a, long r0, long r1);
