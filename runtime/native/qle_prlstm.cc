// PR-LSTM CPU kernel (see qle_prlstm.h): matrix products through qle_qmatmul (the qle_cpu.h kernel
// table, per quantization mode), gate maths through per-ISA element-wise loops compiled from one source (qle_family_math.h).
#include "qle_prlstm.h"

#include <math.h>
#include <string.h>

#include <vector>

#include "qle_family_math.h"

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

QLE_PR_GATES(base, , 4)
#if defined(QLE_X86)
QLE_PR_GATES(avx2, QLE_FM_AVX2, 8)
QLE_PR_GATES(avx512, QLE_FM_AVX512, 16)
#endif

const Gates& gates_for(const QleCpuKernels* k) {
#if defined(QLE_X86)
  switch (qle_family_isa_level(k)) {
    case 2: return kGates_avx512;
    case 1: return kGates_avx2;
  }
#else
  (void)k;
#endif
  return kGates_base;
}

// -- one stream --------------------------------------------------------------------------------

struct Scratch {
  std::vector<float> buf;
};
thread_local Scratch t_scratch;

struct Ctx {
  const QleCpuKernels* k;
  const Gates* g;
  const QlePrlstmArgs* a;
  float* hh;  // [2H]: [h_l; h_r]
  float* z;   // [5H]
};

// (h, c) = combine((h_l, c_l), (h_r, c_r)); h, c must not alias the inputs.
void combine(const Ctx& x, const float* h_l, const float* c_l, const float* h_r, const float* c_r,
             float* h, float* c) {
  const QlePrlstmArgs& a = *x.a;
  const long H = a.H;
  memcpy(x.hh, h_l, sizeof(float) * H);
  memcpy(x.hh + H, h_r, sizeof(float) * H);
  qle_qmatmul(x.k, a.w->merge, 1, x.hh, 2 * H, a.b_merge, 0, x.z, 5 * H);
  x.g->merge(H, x.z, c_l, c_r, h, c);
  for (long r = 0; r < a.R; ++r) {
    qle_qmatmul(x.k, a.w->unary[(size_t)r], 1, h, H, a.b_unary + r * 4 * H, 0, x.z, 4 * H);
    x.g->unary(H, x.z, c, h, c);
  }
}

}  // namespace

const char* qle_prlstm_pack(QleQMode mode, long block, const void* W_leaf, const void* W_merge,
                            const void* W_unary, const float* s_leaf, const float* s_merge,
                            const float* s_unary, long D, long H, long R, QlePrlstmWeights* w) {
  if (const char* e = qle_qmatrix_pack(mode, block, W_leaf, 0, s_leaf, D, 3 * H, &w->leaf)) return e;
  if (const char* e = qle_qmatrix_pack(mode, block, W_merge, 0, s_merge, 2 * H, 5 * H, &w->merge)) return e;
  // scale slice r: int8 [4H]; int4 [ceil(H / bs), 4H]
  const long scale_slice = mode == QleQMode::I4 ? (H + block - 1) / block * 4 * H : 4 * H;
  w->unary.resize((size_t)R);
  for (long r = 0; r < R; ++r) {
    const float* s = s_unary != nullptr ? s_unary + r * scale_slice : nullptr;
    if (const char* e = qle_qmatrix_pack(mode, block, W_unary, (size_t)(r * H * 4 * H), s, H, 4 * H,
                                         &w->unary[(size_t)r]))
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
  std::vector<float>& buf = t_scratch.buf;
  const size_t need = (size_t)(2 * H + 5 * H + 3 * T * H + 4 * H);
  if (buf.size() < need) buf.resize(need);
  float* hh = buf.data();
  float* z = hh + 2 * H;
  float* leaf_z = z + 5 * H;  // [T, 3H]
  float* cur_h = leaf_z + 3 * T * H;
  float* cur_c = cur_h + H;
  float* p_h = cur_c + H;
  float* p_c = p_h + H;
  const Ctx ctx{k, &g, &a, hh, z};
  const uint64_t low_mask = (K >= 64) ? ~0ull : ((1ull << K) - 1);
  const int64_t limit = (int64_t)1 << K;  // positions >= 2^K are past the stream limit
  const float nan = nanf("");
  for (long r = r0; r < r1; ++r) {
    float* bh = a.block_h_out + r * KH;
    float* bc = a.block_c_out + r * KH;
    float* ph = a.prefix_h_out + r * KH;
    float* pc = a.prefix_c_out + r * KH;
    memcpy(bh, a.block_h + r * KH, sizeof(float) * KH);
    memcpy(bc, a.block_c + r * KH, sizeof(float) * KH);
    memcpy(ph, a.prefix_h + r * KH, sizeof(float) * KH);
    memcpy(pc, a.prefix_c + r * KH, sizeof(float) * KH);
    int64_t n = a.count[r];
    // the chunk's leaf pre-activations in one product
    qle_qmatmul(k, a.w->leaf, T, a.x + r * T * D, D, a.b_leaf, 0, leaf_z, 3 * H);
    for (long t = 0; t < T; ++t, ++n) {
      const uint64_t L = (uint64_t)n & low_mask;
      const long carries = L == low_mask ? 0 : __builtin_ctzll(~L);
      g.leaf(H, leaf_z + t * 3 * H, cur_h, cur_c);
      for (long b = 0; b < carries; ++b) {
        combine(ctx, bh + b * H, bc + b * H, cur_h, cur_c, p_h, p_c);
        memcpy(cur_h, p_h, sizeof(float) * H);
        memcpy(cur_c, p_c, sizeof(float) * H);
      }
      const uint64_t above = carries + 1 < 64 ? L >> (carries + 1) : 0;
      if (above != 0) {
        const long base = carries + 1 + __builtin_ctzll(above);
        combine(ctx, ph + base * H, pc + base * H, cur_h, cur_c, p_h, p_c);
      } else {
        memcpy(p_h, cur_h, sizeof(float) * H);
        memcpy(p_c, cur_c, sizeof(float) * H);
      }
      float* y = a.Y + (r * T + t) * H;
      if (n + 1 >= limit)
        for (long j = 0; j < H; ++j) y[j] = nan;
      else
        memcpy(y, p_h, sizeof(float) * H);
      memset(bh, 0, sizeof(float) * carries * H);
      memset(bc, 0, sizeof(float) * carries * H);
      memset(ph, 0, sizeof(float) * carries * H);
      memset(pc, 0, sizeof(float) * carries * H);
      memcpy(bh + carries * H, cur_h, sizeof(float) * H);
      memcpy(bc + carries * H, cur_c, sizeof(float) * H);
      memcpy(ph + carries * H, p_h, sizeof(float) * H);
      memcpy(pc + carries * H, p_c, sizeof(float) * H);
    }
    a.count_out[r] = n;
  }
}
