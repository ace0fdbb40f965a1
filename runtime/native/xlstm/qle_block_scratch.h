// The block kernels' scratch: one float buffer cut into named parts of M = B T rows each, the same layout
// for the CPU kernel and the CUDA launcher of each block. qle_<block>_scratch(..., base, parts) returns the
// floats the parts take, and points them into base when it is not null (null: only the count).
#pragma once

#include <stddef.h>

#include <initializer_list>
#include <utility>

// Cuts consecutive parts of the given float counts from base (when not null); returns their total.
inline size_t qle_scratch_cut(float* base, std::initializer_list<std::pair<float**, long>> parts) {
  size_t n = 0;
  for (const auto& [part, count] : parts) {
    if (base) *part = base + n;
    n += (size_t)count;
  }
  return n;
}

// xLSTMLarge block (QK = NH DK, V = NH DV): normed input, q k v o, gates, q, k, v, i, f, h, x1, FFN up, FFN gated.
struct QleLargeBlockScratch {
  float *xn, *qkvo, *gates, *q, *k, *v, *ig, *fg, *h, *x1, *up, *hf;
};
inline size_t qle_large_block_scratch(long M, long E, long NH, long QK, long V, long U, float* base,
                                      QleLargeBlockScratch* s) {
  return qle_scratch_cut(base, {{&s->xn, M * E}, {&s->qkvo, M * (2 * QK + 2 * V)}, {&s->gates, M * 2 * NH},
                                {&s->q, M * QK}, {&s->k, M * QK}, {&s->v, M * V}, {&s->ig, M * NH},
                                {&s->fg, M * NH}, {&s->h, M * V}, {&s->x1, M * E}, {&s->up, M * 2 * U},
                                {&s->hf, M * U}});
}

// The LM's mLSTM block (I = NH DH): normed input, up (x_m, z), conv output, q k v, gates, q, k, v, i, f, h.
struct QleMlstmBlockScratch {
  float *xn, *up, *x_c, *qkv, *gates, *q, *k, *v, *ig, *fg, *h;
};
inline size_t qle_mlstm_block_scratch(long M, long E, long NH, long I, float* base, QleMlstmBlockScratch* s) {
  return qle_scratch_cut(base, {{&s->xn, M * E}, {&s->up, M * 2 * I}, {&s->x_c, M * I}, {&s->qkv, M * 3 * I},
                                {&s->gates, M * 2 * NH}, {&s->q, M * I}, {&s->k, M * I}, {&s->v, M * I},
                                {&s->ig, M * NH}, {&s->fg, M * NH}, {&s->h, M * I}});
}

// The LM's sLSTM block and its FFN: normed input, conv output, gate pre-activations, y, x1, FFN up, FFN gated.
struct QleSlstmBlockScratch {
  float *xn, *xc, *wx, *y, *x1, *up, *hf;
};
inline size_t qle_slstm_block_scratch(long M, long E, long U, float* base, QleSlstmBlockScratch* s) {
  return qle_scratch_cut(base, {{&s->xn, M * E}, {&s->xc, M * E}, {&s->wx, M * 4 * E}, {&s->y, M * E},
                                {&s->x1, M * E}, {&s->up, M * 2 * U}, {&s->hf, M * U}});
}
