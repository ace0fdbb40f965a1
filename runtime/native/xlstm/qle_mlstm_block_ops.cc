// mLSTMBlock / mLSTMBlockSequence: their specs, shape checks and CPU op (weight packing, arguments),
// registered with the library's domain by a static registrar (qle_registry.h); the specs and checks are the
// CUDA op's too (qle_mlstm_block_ops.h). The kernel is in qle_mlstm_block.cc.
// Inputs (I = NH DH; NH, DH from C, KS from conv_weight, BS from W_qkv, NP = I / BS):
//   0 x [B, E] (sequence: [B, T, E]), 1 conv [B, KS, I], 2 C [B, NH, DH, DH], 3 n [B, NH, DH, 1],
//   4 m [B, NH, 1, 1], 5 norm_weight, 6 norm_bias [E], 7 W_up [E, 2I], 8 b_up, 9 conv_weight [KS, I],
//   10 conv_bias [I], 11 W_qkv [3, NP, BS, BS], 12 b_qkv [3I], 13 W_if [3I, 2NH], 14 b_if,
//   15 head_norm_weight, 16 head_norm_bias, 17 skip [I], 18 W_down [I, E], 19 b_down,
//   20 k_scale, 21 eps (host scalars); the integer modes append the four matrices' scales (22..25).
//   The float attribute norm_eps is the epsilon of the two norms.
// Quantized nodes follow exporters/quantize.py's contract (qle_qmatrix.h; W_qkv stacked, slice by slice);
// constant matrices (initializers) are packed once per kernel (float32 dense ones in column panels), others
// on every call.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <memory>
#include <string>
#include <vector>

#include "qle_contract.h"
#include "qle_cpu_ops.h"
#include "qle_mlstm_block.h"
#include "qle_mlstm_block_ops.h"
#include "qle_registry.h"
#include "qle_shape.h"

namespace {

constexpr size_t kDense[3] = {7, 13, 18};  // W_up, W_if, W_down
constexpr size_t kQkv = 11;
constexpr size_t kRegular = 22;
constexpr size_t kQkvScale = kRegular + 1;
// the scale input of dense matrix j (the scales follow W_up, W_qkv, W_if, W_down)
constexpr size_t dense_scale(size_t j) { return kRegular + (j == 0 ? 0 : j + 1); }

struct Dims {
  int64_t B, T, E, NH, DH, KS, BS;
  int64_t I() const { return NH * DH; }
  // [K, N] of dense matrix j of kDense
  int64_t K(size_t j) const { return j == 0 ? E : j == 1 ? 3 * I() : I(); }
  int64_t N(size_t j) const { return j == 0 ? 2 * I() : j == 1 ? 2 * NH : E; }
};

struct Weights {
  std::vector<QleBlockMatrix> dense;  // in kDense order
  QleHeadwise qkv;
};
using Packed = QlePacked<Weights>;

const QleOpSpec& spec(bool seq) {
  static const std::vector<const char*> names = {
      "x", "conv", "C", "n", "m", "norm_weight", "norm_bias", "W_up", "b_up", "conv_weight", "conv_bias", "W_qkv",
      "b_qkv", "W_if", "b_if", "head_norm_weight", "head_norm_bias", "skip", "W_down", "b_down", "k_scale", "eps",
      "W_up_scale", "W_qkv_scale", "W_if_scale", "W_down_scale"};
  static const std::vector<const char*> seq_names = [] {
    std::vector<const char*> v = names;
    v[1] = "conv0", v[2] = "C0", v[3] = "n0", v[4] = "m0";
    return v;
  }();
  static const std::vector<ONNXTensorElementDataType> types(kRegular, kQleF32), outputs(5, kQleF32);
  static const QleOpSpec cell{"mLSTMBlock", false, names, types, outputs, {7, 11, 13, 18}, false, {20, 21},
                              {"norm_eps"}};
  static const QleOpSpec sequence{"mLSTMBlockSequence", true, seq_names, types, outputs, {7, 11, 13, 18}, false,
                                  {20, 21}, {"norm_eps"}};
  return seq ? sequence : cell;
}

const char* scale_layout(QleQMode mode) {
  return mode == QleQMode::I4 ? "[ceil(K / block_size), N] of its matrix [K, N]"
                              : "[N] of its matrix [K, N] (one scale per output channel)";
}

// The sizes from x, C, conv_weight and W_qkv, and the matrices' (and their scales') shapes.
OrtStatusPtr check_matrices(const QleOpInputs& in, long block, Dims* d) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(2, 4, "[B, NH, DH, DH]")) || (st = in.rank(9, 2, "[KS, I]")) ||
      (st = in.rank(kQkv, 4, "[3, NP, BS, BS]")))
    return st;
  d->NH = in.shape[2][1], d->DH = in.shape[2][2], d->KS = in.shape[9][0], d->BS = in.shape[kQkv][2];
  if ((st = in.sizes({qle_size_error("the embedding size E", "x's last dimension", d->E, 1, kQleMaxWidth),
                      qle_size_error("the head count NH", "C's second dimension", d->NH, 1, kQleMaxHeads),
                      qle_size_error("the head size DH", "C's third dimension", d->DH, 1, kQleMaxWidth),
                      qle_size_error("the conv kernel size KS", "conv_weight's first dimension", d->KS, 1,
                                     kQleMaxWidth),
                      qle_size_error("the q/k/v head size BS", "W_qkv's third dimension", d->BS, 1,
                                     kQleMaxWidth)})) ||
      (st = in.sizes({qle_size_error("the width 3 NH DH", "C's dimensions", 3 * d->I(), 1, kQleMaxWidth)})))
    return st;
  const int64_t I = d->I(), BS = d->BS;
  if (I % BS != 0)
    return in.invalid("input 'W_qkv' [3, NP, BS, BS] must split I = NH DH = " + std::to_string(I) +
                      " into heads of BS = " + std::to_string(BS) + " (its third dimension)");
  static const char* const layouts[3][2] = {{"[E, 2I]", "[E, I] (int4 two per byte)"},
                                            {"[3I, 2NH]", "[3I, NH] (int4 two per byte)"},
                                            {"[I, E]", "[I, ceil(E / 2)] (int4 two per byte)"}};
  for (size_t j = 0; j < 3; ++j) {
    const size_t i = kDense[j];
    if ((st = in.expect(i, {d->K(j), in.width(i, d->N(j))}, in.layout(i, layouts[j][0], layouts[j][1])))) return st;
    if (qle_qmode_integer(in.mode) &&
        (st = in.expect(dense_scale(j), qle_scale_shape(in.mode, block, {}, d->K(j), d->N(j)), scale_layout(in.mode))))
      return st;
  }
  if ((st = in.expect(kQkv, {3, I / BS, BS, in.width(kQkv, BS)},
                      in.layout(kQkv, "[3, NP, BS, BS]", "[3, NP, BS, ceil(BS / 2)] (int4 two per byte)"))))
    return st;
  if (qle_qmode_integer(in.mode) &&
      (st = in.expect(kQkvScale, qle_scale_shape(in.mode, block, {3, I / BS}, BS, BS),
                      in.mode == QleQMode::I4 ? "[3, NP, ceil(BS / block_size), BS] of W_qkv [3, NP, BS, BS]"
                                              : "[3, NP, BS] of W_qkv [3, NP, BS, BS] (one scale per output)")))
    return st;
  return in.dynamic_limit({{"E", d->E}, {"3I", 3 * I}, {"I", I}});
}

OrtStatusPtr check(const QleOpInputs& in, long block, bool seq, Dims* d) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 3 : 2, seq ? "[B, T, E]" : "[B, E]"))) return st;
  const std::vector<int64_t>& xs = in.shape[0];
  d->B = xs[0], d->T = seq ? xs[1] : 1, d->E = xs.back();
  if ((st = check_matrices(in, block, d))) return st;
  const int64_t B = d->B, E = d->E, NH = d->NH, DH = d->DH, I = d->I();
  if ((st = in.expect(1, {B, d->KS, I}, "[B, KS, I]")) || (st = in.expect(2, {B, NH, DH, DH}, "[B, NH, DH, DH]")) ||
      (st = in.expect(3, {B, NH, DH, 1}, "[B, NH, DH, 1]")) || (st = in.expect(4, {B, NH, 1, 1}, "[B, NH, 1, 1]")) ||
      (st = in.expect(9, {d->KS, I}, "[KS, I]")))
    return st;
  const struct { size_t i; int64_t n; const char* layout; } vectors[] = {  // the biases, norm weights and skip
      {5, E, "[E]"},   {6, E, "[E]"}, {8, 2 * I, "[2I]"}, {10, I, "[I]"}, {12, 3 * I, "[3I]"}, {14, 2 * NH, "[2NH]"},
      {15, I, "[I]"}, {16, I, "[I]"}, {17, I, "[I]"},   {19, E, "[E]"}};
  for (const auto& v : vectors)
    if ((st = in.expect(v.i, {v.n}, v.layout))) return st;
  return nullptr;
}

// Packs the dense matrices [K_j, N_j] and W_qkv [3, NP, BS, BS] (and their scales) into *w.
const char* pack(const QleOpInputs& in, long block, const int64_t (&K)[3], const int64_t (&N)[3], int64_t NP,
                 int64_t BS, Weights* w) {
  w->dense.resize(3);
  for (size_t j = 0; j < 3; ++j) {
    const size_t i = kDense[j];
    if (const char* e = qle_qmatrix_pack(in.mode, block, in.data[i], in.type[i], 0, in.scale(dense_scale(j)),
                                         (long)K[j], (long)N[j], &w->dense[j].w))
      return e;
  }
  return qle_headwise_pack(in.mode, block, in.data[kQkv], in.type[kQkv], in.scale(kQkvScale), 3, (long)NP, (long)BS,
                           (long)BS, &w->qkv);
}

const char* pack_checked(const QleOpInputs& in, long block, const Dims& d, Weights* w) {
  int64_t K[3], N[3];
  for (size_t j = 0; j < 3; ++j) K[j] = d.K(j), N[j] = d.N(j);
  return pack(in, block, K, N, d.I() / d.BS, d.BS, w);
}

OrtStatusPtr run(Ort::KernelContext& ctx, const QleCpuKernels* k, const QleOpInputs& in, const Packed& pk) {
  const bool seq = in.op.sequence;
  Dims d;
  if (OrtStatusPtr st = check(in, pk.block, seq, &d)) return st;
  Weights local;
  const Weights* w = nullptr;
  if (OrtStatusPtr st = pk.get(in, &local, [&](Weights* l) { return pack_checked(in, pk.block, d, l); }, &w)) return st;
  QleMlstmBlockArgs a{};
  if (OrtStatusPtr st = in.scalar(20, &a.k_scale)) return st;
  if (OrtStatusPtr st = in.scalar(21, &a.eps)) return st;
  a.B = d.B, a.T = d.T, a.E = d.E, a.NH = d.NH, a.DH = d.DH, a.KS = d.KS;
  a.norm_eps = pk.attributes[0];
  a.x = in.f(0), a.conv = in.f(1), a.C = in.f(2), a.n = in.f(3), a.m = in.f(4);
  a.norm_w = in.f(5), a.norm_b = in.f(6), a.b_up = in.f(8), a.conv_w = in.f(9), a.conv_b = in.f(10);
  a.b_qkv = in.f(12), a.b_if = in.f(14), a.head_norm_w = in.f(15), a.head_norm_b = in.f(16), a.skip = in.f(17);
  a.b_down = in.f(19);
  a.W_up = &w->dense[0], a.W_if = &w->dense[1], a.W_down = &w->dense[2], a.W_qkv = &w->qkv;
  const int64_t I = d.I();
  a.Y = qle_output(ctx, 0, seq ? std::vector<int64_t>{d.B, d.T, d.E} : std::vector<int64_t>{d.B, d.E});
  a.conv_out = qle_output(ctx, 1, {d.B, d.KS, I});
  a.C_out = qle_output(ctx, 2, {d.B, d.NH, d.DH, d.DH});
  a.n_out = qle_output(ctx, 3, {d.B, d.NH, d.DH, 1});
  a.m_out = qle_output(ctx, 4, {d.B, d.NH, 1, 1});
  qle_mlstm_block(k, a);
  return nullptr;
}

// Packs constant matrices (and their scales) once per kernel, float32 dense ones in column panels.
void prepack(const QleOpInputs& in, Packed* pk) {
  int64_t K[3], N[3], BS, N_qkv;
  for (size_t j = 0; j < 3; ++j)
    if (!qle_constant_matrix_sizes(in, pk->block, kDense[j], dense_scale(j), 0, &K[j], &N[j])) return;
  if (!qle_constant_matrix_sizes(in, pk->block, kQkv, kQkvScale, 2, &BS, &N_qkv) || N_qkv != BS ||
      in.shape[kQkv][0] != 3)
    return;
  std::unique_ptr<Weights> w(new Weights);
  if (const char* e = pack(in, pk->block, K, N, in.shape[kQkv][1], BS, w.get())) {
    pk->error = e;
    return;
  }
  if (in.mode == QleQMode::F32)
    for (QleBlockMatrix& m : w->dense) qle_block_panels(&m);
  pk->w = std::move(w);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  qle_append_ops<QleCpuOp<Weights, run, prepack, true>>({&spec(false), &spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace

const QleOpSpec& qle_mlstm_block_spec(bool seq) { return spec(seq); }

OrtStatusPtr qle_check_mlstm_block(const QleOpInputs& in, long block, bool seq, QleMlstmBlockDims* dims) {
  Dims d{};
  OrtStatusPtr st = check(in, block, seq, &d);
  *dims = QleMlstmBlockDims{d.B, d.T, d.E, d.NH, d.DH, d.KS, d.BS};
  return st;
}
