// PR-LSTM CPU kernel (see qle_prlstm.h): matrix products through qle_qmatmul (the qle_cpu.h kernel
// table, per quantization mode), gate maths through per-ISA lane loops compiled from one source
// (qle_prlstm_math.h).
#include "qle_prlstm.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include <vector>

#include "qle_prlstm_math.h"
#include "qle_shape.h"

namespace {

// -- element-wise gate maths (z: the pre-activations, gate-major blocks of H) -------------------
// Each *_lanes function handles units [j, j + n), n <= W.

// leaf: c = sig(i) tanh(g); h = sig(o) tanh(c)
template <int W>
QLE_FM_INLINE void leaf_lanes(long H, long j, long n, const float* z, float* h, float* c) {
  typedef QleLanes<W> L;
  typename L::F hj, cj;
  qle_fm_pr_leaf(L::load(z + j, n), L::load(z + H + j, n), L::load(z + 2 * H + j, n), &hj, &cj);
  L::store(c + j, cj, n);
  L::store(h + j, hj, n);
}

// merge: c = sig(i) tanh(g) + (sig(f_l) c_l + sig(f_r) c_r); h = sig(o) tanh(c)
template <int W>
QLE_FM_INLINE void merge_lanes(long H, long j, long n, const float* z, const float* c_l,
                               const float* c_r, float* h, float* c) {
  typedef QleLanes<W> L;
  typename L::F hj, cj;
  qle_fm_pr_merge(L::load(z + j, n), L::load(z + H + j, n), L::load(z + 2 * H + j, n),
                  L::load(z + 3 * H + j, n), L::load(z + 4 * H + j, n), L::load(c_l + j, n),
                  L::load(c_r + j, n), &hj, &cj);
  L::store(c + j, cj, n);
  L::store(h + j, hj, n);
}

// unary refinement: c' = sig(i) tanh(g) + sig(f) c; h = sig(o) tanh(c'). c may alias c_out.
template <int W>
QLE_FM_INLINE void unary_lanes(long H, long j, long n, const float* z, const float* c, float* h,
                               float* c_out) {
  typedef QleLanes<W> L;
  typename L::F hj, cj;
  qle_fm_pr_unary(L::load(z + j, n), L::load(z + H + j, n), L::load(z + 2 * H + j, n),
                  L::load(z + 3 * H + j, n), L::load(c + j, n), &hj, &cj);
  L::store(c_out + j, cj, n);
  L::store(h + j, hj, n);
}

struct Gates {
  void (*leaf)(long, const float*, float*, float*);
  void (*merge)(long, const float*, const float*, const float*, float*, float*);
  void (*unary)(long, const float*, const float*, float*, float*);
};

// The loops over H units for W lanes (full vectors, then one partial vector).
#define QLE_PR_GATES(NAME, ATTR, W)                                                             \
  ATTR void leaf_##NAME(long H, const float* z, float* h, float* c) {                           \
    long j = 0;                                                                                 \
    for (; j + W <= H; j += W) leaf_lanes<W>(H, j, W, z, h, c);                                 \
    if (j < H) leaf_lanes<W>(H, j, H - j, z, h, c);                                             \
  }                                                                                             \
  ATTR void merge_##NAME(long H, const float* z, const float* c_l, const float* c_r, float* h,  \
                         float* c) {                                                            \
    long j = 0;                                                                                 \
    for (; j + W <= H; j += W) merge_lanes<W>(H, j, W, z, c_l, c_r, h, c);                      \
    if (j < H) merge_lanes<W>(H, j, H - j, z, c_l, c_r, h, c);                                  \
  }                                                                                             \
  ATTR void unary_##NAME(long H, const float* z, const float* c, float* h, float* c_out) {      \
    long j = 0;                                                                                 \
    for (; j + W <= H; j += W) unary_lanes<W>(H, j, W, z, c, h, c_out);                         \
    if (j < H) unary_lanes<W>(H, j, H - j, z, c, h, c_out);                                     \
  }                                                                                             \
  const Gates kGates_##NAME = {leaf_##NAME, merge_##NAME, unary_##NAME};

QLE_LANES_INSTANCES(QLE_PR_GATES)

const Gates& gates_for(const QleCpuKernels* k) { return QLE_LANES_PICK(k, kGates_); }

// -- one stream --------------------------------------------------------------------------------

// Pieces of at least kLevelMinT tokens run level by level, shorter ones token by token: from about
// 16 tokens on, batching a level's merges into one product pays for the level bookkeeping in every
// weight mode.
constexpr long kLevelMinT = 16;
// A chunk runs in pieces of at most kPieceT tokens, one after another (the scratch is sized for
// one piece); each piece starts from the state the previous one left.
constexpr long kPieceT = 2048;

// Scratch of one qle_prlstm_rows call, sized for pieces of at most P tokens.
struct Work {
  const QleCpuKernels* k;
  const Gates* g;
  const QlePrlstmArgs* a;
  std::vector<float> leaf_z;        // [P, 3H]: a piece's leaf pre-activations
  std::vector<float> hh;            // [M, 2H]: rows [h_l; h_r] of a batch of merges
  std::vector<float> z;             // [M, 5H]: their pre-activations
  std::vector<const float*> cl, cr; // [M]: their c_l, c_r
  std::vector<float> tok;           // [4H]: the token path's new block and prefix (h, c)
  std::vector<float> blk_h, blk_c;  // [2P + K, H]: the level path's blocks, level by level
  std::vector<float> pre_c;         // [P, H]: the level path's prefix c (prefix h is written to Y)
};

// One stream's state (the output tensors, updated in place) and count.
struct Stream {
  float *bh, *bc, *ph, *pc;  // [K, H]
  int64_t n;
};

// Rows i < M: (h, c)[i] = combine((h_l, cl[i]), (h_r, cr[i])) with w.hh row i = [h_l; h_r]; the
// results go to h + i * ld, c + i * ld, which must not alias the operands. Every product runs on the
// M rows at once (qle_qmatmul treats each row as the 1-row product would).
void combine_rows(Work& w, long M, float* h, float* c, long ld) {
  const QlePrlstmArgs& a = *w.a;
  const long H = a.H;
  qle_qmatmul(w.k, a.w->merge, M, w.hh.data(), 2 * H, a.b_merge, 0, w.z.data(), 5 * H);
  for (long i = 0; i < M; ++i)
    w.g->merge(H, w.z.data() + i * 5 * H, w.cl[(size_t)i], w.cr[(size_t)i], h + i * ld, c + i * ld);
  for (long r = 0; r < a.R; ++r) {
    qle_qmatmul(w.k, a.w->unary[(size_t)r], M, h, ld, a.b_unary + r * 4 * H, 0, w.z.data(), 4 * H);
    for (long i = 0; i < M; ++i) w.g->unary(H, w.z.data() + i * 4 * H, c + i * ld, h + i * ld, c + i * ld);
  }
}

// Stages merge i of a batch: w.hh row i = [h_l; h_r], c_l and c_r.
void stage(Work& w, long i, const float* h_l, const float* c_l, const float* h_r, const float* c_r) {
  const long H = w.a->H;
  memcpy(w.hh.data() + i * 2 * H, h_l, sizeof(float) * H);
  memcpy(w.hh.data() + i * 2 * H + H, h_r, sizeof(float) * H);
  w.cl[(size_t)i] = c_l;
  w.cr[(size_t)i] = c_r;
}

// Tokens [t0, t1) of row r, one token update after another (the header's equations).
void run_tokens(Work& w, long r, long t0, long t1, Stream* s) {
  const QlePrlstmArgs& a = *w.a;
  const long H = a.H, K = a.K;
  float* cur_h = w.tok.data();
  float* cur_c = cur_h + H;
  float* p_h = cur_c + H;
  float* p_c = p_h + H;
  const uint64_t low_mask = (K >= 64) ? ~0ull : ((1ull << K) - 1);
  const int64_t limit = (int64_t)1 << K;  // positions >= 2^K are past the stream limit
  const float nan = nanf("");
  for (long t = t0; t < t1; ++t, ++s->n) {
    const uint64_t L = (uint64_t)s->n & low_mask;
    const long carries = L == low_mask ? 0 : __builtin_ctzll(~L);
    w.g->leaf(H, w.leaf_z.data() + (t - t0) * 3 * H, cur_h, cur_c);
    for (long b = 0; b < carries; ++b) {
      stage(w, 0, s->bh + b * H, s->bc + b * H, cur_h, cur_c);
      combine_rows(w, 1, p_h, p_c, H);
      memcpy(cur_h, p_h, sizeof(float) * H);
      memcpy(cur_c, p_c, sizeof(float) * H);
    }
    const uint64_t above = carries + 1 < 64 ? L >> (carries + 1) : 0;
    if (above != 0) {
      const long base = carries + 1 + __builtin_ctzll(above);
      stage(w, 0, s->ph + base * H, s->pc + base * H, cur_h, cur_c);
      combine_rows(w, 1, p_h, p_c, H);
    } else {
      memcpy(p_h, cur_h, sizeof(float) * H);
      memcpy(p_c, cur_c, sizeof(float) * H);
    }
    float* y = a.Y + (r * a.T + t) * H;
    if (s->n + 1 >= limit)
      for (long j = 0; j < H; ++j) y[j] = nan;
    else
      memcpy(y, p_h, sizeof(float) * H);
    memset(s->bh, 0, sizeof(float) * carries * H);
    memset(s->bc, 0, sizeof(float) * carries * H);
    memset(s->ph, 0, sizeof(float) * carries * H);
    memset(s->pc, 0, sizeof(float) * carries * H);
    memcpy(s->bh + carries * H, cur_h, sizeof(float) * H);
    memcpy(s->bc + carries * H, cur_c, sizeof(float) * H);
    memcpy(s->ph + carries * H, p_h, sizeof(float) * H);
    memcpy(s->pc + carries * H, p_c, sizeof(float) * H);
  }
}

// Tokens [t0, t1) of row r level by level, the same merges as run_tokens on the same operands.
// Global positions p = n0 + 1 .. N (n0 = the count before, N = n0 + t1 - t0 < 2^K). block(l, p) is
// the block of the 2^l positions ending at p (p a multiple of 2^l), prefix(p) covers 1 .. p:
//   block(0, p) = leaf(p); block(l, p) = combine(block(l-1, p - 2^(l-1)), block(l-1, p))
//   prefix(p) = combine(prefix(p - lowbit(p)), block(lowbit level, p)), = the block if p is a power of 2
// Operands ending at or before n0 are the stack's (block level l-1; prefix level ctz(p - lowbit(p))),
// which the token path has not overwritten by then. Blocks are built bottom up (level l: every
// multiple of 2^l in (n0, N] in one batch), prefixes top down (level l: every p with lowbit 2^l,
// whose operand prefix has a larger lowbit, in one batch); y(p) = h of prefix(p). Level l of the
// new state is that of the last p <= N with lowbit >= 2^l (kept if p <= n0): (block, prefix) where
// the lowbit is 2^l, else zeros.
void run_levels(Work& w, long r, long t0, long t1, Stream* s) {
  const QlePrlstmArgs& a = *w.a;
  const long H = a.H, K = a.K;
  const int64_t n0 = s->n, N = n0 + (t1 - t0);
  float* Y = a.Y + (r * a.T + t0) * H;  // y / prefix h of position p: row p - n0 - 1
  float* pre_c = w.pre_c.data();
  float* blk_h = w.blk_h.data();
  float* blk_c = w.blk_c.data();
  int64_t first[64];  // level l: the blocks ending at first[l] + i 2^l, i < cnt[l], rows off[l] + i
  long cnt[64], off[64];
  auto block = [&](long l, int64_t p) { return (off[l] + (long)((p - first[l]) >> l)) * H; };
  first[0] = n0 + 1, cnt[0] = t1 - t0, off[0] = 0;
  for (long t = 0; t < cnt[0]; ++t) w.g->leaf(H, w.leaf_z.data() + t * 3 * H, blk_h + t * H, blk_c + t * H);
  long levels = 1;
  for (long l = 1; l < K; ++l, ++levels) {
    cnt[l] = (long)((N >> l) - (n0 >> l));
    if (cnt[l] == 0) break;
    first[l] = ((n0 >> l) + 1) << l;
    off[l] = off[l - 1] + cnt[l - 1];
    const int64_t half = (int64_t)1 << (l - 1);
    for (long i = 0; i < cnt[l]; ++i) {
      const int64_t p = first[l] + ((int64_t)i << l);
      const long right = block(l - 1, p);
      if (p - half > n0) {
        const long left = block(l - 1, p - half);
        stage(w, i, blk_h + left, blk_c + left, blk_h + right, blk_c + right);
      } else {
        stage(w, i, s->bh + (l - 1) * H, s->bc + (l - 1) * H, blk_h + right, blk_c + right);
      }
    }
    combine_rows(w, cnt[l], blk_h + off[l] * H, blk_c + off[l] * H, H);
  }
  for (long l = levels - 1; l >= 0; --l) {
    const int64_t low = (int64_t)1 << l, step = low << 1;
    int64_t p = first[l] + (((first[l] >> l) & 1) ? 0 : low);  // the first p > n0 with lowbit 2^l
    if (p == low && p <= N) {  // prefix(2^l) is the block
      memcpy(Y + (p - n0 - 1) * H, blk_h + block(l, p), sizeof(float) * H);
      memcpy(pre_c + (p - n0 - 1) * H, blk_c + block(l, p), sizeof(float) * H);
      p += step;
    }
    const int64_t p_first = p;
    long M = 0;
    for (; p <= N; p += step, ++M) {
      const int64_t q = p - low;
      if (q > n0)
        stage(w, M, Y + (q - n0 - 1) * H, pre_c + (q - n0 - 1) * H, blk_h + block(l, p), blk_c + block(l, p));
      else
        stage(w, M, s->ph + __builtin_ctzll((uint64_t)q) * H, s->pc + __builtin_ctzll((uint64_t)q) * H,
              blk_h + block(l, p), blk_c + block(l, p));
    }
    if (M > 0) combine_rows(w, M, Y + (p_first - n0 - 1) * H, pre_c + (p_first - n0 - 1) * H, step * H);
  }
  for (long b = 0; b < K; ++b) {
    const int64_t q = (N >> b) << b;
    if (q <= n0) continue;
    if ((q >> b) & 1) {
      memcpy(s->bh + b * H, blk_h + block(b, q), sizeof(float) * H);
      memcpy(s->bc + b * H, blk_c + block(b, q), sizeof(float) * H);
      memcpy(s->ph + b * H, Y + (q - n0 - 1) * H, sizeof(float) * H);
      memcpy(s->pc + b * H, pre_c + (q - n0 - 1) * H, sizeof(float) * H);
    } else {
      memset(s->bh + b * H, 0, sizeof(float) * H);
      memset(s->bc + b * H, 0, sizeof(float) * H);
      memset(s->ph + b * H, 0, sizeof(float) * H);
      memset(s->pc + b * H, 0, sizeof(float) * H);
    }
  }
  s->n = N;
}

}  // namespace

const char* qle_prlstm_pack(QleQMode mode, long block, const void* W_leaf, const void* W_merge,
                            const void* W_unary, const ONNXTensorElementDataType types[3],
                            const float* s_leaf, const float* s_merge, const float* s_unary, long D,
                            long H, long R, QlePrlstmWeights* w) {
  if (const char* e = qle_qmatrix_pack(mode, block, W_leaf, types[0], 0, s_leaf, D, 3 * H, &w->leaf)) return e;
  if (const char* e = qle_qmatrix_pack(mode, block, W_merge, types[1], 0, s_merge, 2 * H, 5 * H, &w->merge))
    return e;
  // scale slice r: int8 [4H]; int4 [ceil(H / bs), 4H]
  const long scale_slice = mode == QleQMode::I4 ? (long)qle_ceil_div(H, block) * 4 * H : 4 * H;
  w->unary.resize((size_t)R);
  for (long r = 0; r < R; ++r) {
    const float* s = s_unary != nullptr ? s_unary + r * scale_slice : nullptr;
    if (const char* e = qle_qmatrix_pack(mode, block, W_unary, types[2], (size_t)(r * H * 4 * H), s, H,
                                         4 * H, &w->unary[(size_t)r]))
      return e;
  }
  return nullptr;
}

void qle_prlstm_rows(const QleCpuKernels* k, const QlePrlstmArgs& a, long r0, long r1) {
  const long H = a.H, K = a.K, T = a.T, D = a.D, KH = K * H;
  if (r1 <= r0 || H == 0) {
    for (long r = r0; r < r1; ++r) a.count_out[r] = a.count[r] + T;
    return;
  }
  const Gates& g = gates_for(k);
  const long P = T < kPieceT ? T : kPieceT;  // the longest piece
  const long M = P >= kLevelMinT ? (P + 1) / 2 : 1;  // the largest batch of merges
  Work w{k, &g, &a, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  w.leaf_z.resize((size_t)(P * 3 * H));
  w.hh.resize((size_t)(M * 2 * H));
  w.z.resize((size_t)(M * 5 * H));
  w.cl.resize((size_t)M);
  w.cr.resize((size_t)M);
  w.tok.resize((size_t)(4 * H));
  if (P >= kLevelMinT) {
    w.blk_h.resize((size_t)((2 * P + K) * H));
    w.blk_c.resize((size_t)((2 * P + K) * H));
    w.pre_c.resize((size_t)(P * H));
  }
  const int64_t limit = (int64_t)1 << K;
  for (long r = r0; r < r1; ++r) {
    Stream s{a.block_h_out + r * KH, a.block_c_out + r * KH, a.prefix_h_out + r * KH,
             a.prefix_c_out + r * KH, a.count[r]};
    memcpy(s.bh, a.block_h + r * KH, sizeof(float) * KH);
    memcpy(s.bc, a.block_c + r * KH, sizeof(float) * KH);
    memcpy(s.ph, a.prefix_h + r * KH, sizeof(float) * KH);
    memcpy(s.pc, a.prefix_c + r * KH, sizeof(float) * KH);
    for (long t0 = 0; t0 < T; t0 += P) {
      const long t1 = T - t0 < P ? T : t0 + P;
      // the piece's leaf pre-activations in one product
      qle_qmatmul(k, a.w->leaf, t1 - t0, a.x + (r * T + t0) * D, D, a.b_leaf, 0, w.leaf_z.data(), 3 * H);
      // past the stream limit (a position >= 2^K): token by token, as the step op
      if (t1 - t0 >= kLevelMinT && s.n < limit - (t1 - t0))
        run_levels(w, r, t0, t1, &s);
      else
        run_tokens(w, r, t0, t1, &s);
    }
    a.count_out[r] = s.n;
  }
}
