// xLSTMLargeBlock / xLSTMLargeBlockSequence: their specs, shape checks (qle_large_block_ops.h: the CUDA op's
// too) and CPU op (weight packing, arguments), registered with the library's domain by a static registrar
// (qle_registry.h). The kernel is in qle_large_block.cc.
// Inputs (QK = NH DK, V = NH DV; NH, DK, DV from C, U from W_down):
//   0 x [B, E] (sequence: [B, T, E]), 1 C [B, NH, DK, DV], 2 n [B, NH, DK], 3 m [B, NH, 1],
//   4 norm_mlstm_weight, 5 norm_mlstm_bias [E], 6 W_qkvo [E, 2QK + 2V], 7 b_qkvo, 8 W_if [E, 2NH], 9 b_if,
//   10 head_norm_weight, 11 head_norm_bias [V], 12 W_out [V, E], 13 b_out, 14 norm_ffn_weight,
//   15 norm_ffn_bias [E], 16 W_up [E, 2U], 17 b_up, 18 W_down [U, E], 19 b_down,
//   20 gate_soft_cap, 21 q_scale, 22 eps (host scalars); the integer modes append the five matrices'
//   scales (23..27). The float attribute norm_eps is the epsilon of the three norms.
// Quantized nodes follow exporters/quantize.py's contract (qle_qmatrix.h); constant matrices (initializers)
// are packed once per kernel (float32 ones in column panels, qle_large_block.h), others on every call.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <memory>
#include <string>
#include <vector>

#include "qle_contract.h"
#include "qle_cpu_ops.h"
#include "qle_large_block.h"
#include "qle_large_block_ops.h"
#include "qle_registry.h"
#include "qle_shape.h"

namespace {

constexpr size_t kMatrices[5] = {6, 8, 12, 16, 18};  // W_qkvo, W_if, W_out, W_up, W_down
constexpr size_t kRegular = 23;

struct Dims {
  int64_t B, T, E, NH, DK, DV, U;
  // [K, N] of matrix j of kMatrices
  int64_t K(size_t j) const { return j == 2 ? NH * DV : j == 4 ? U : E; }
  int64_t N(size_t j) const {
    return j == 0 ? 2 * NH * DK + 2 * NH * DV : j == 1 ? 2 * NH : j == 3 ? 2 * U : E;
  }
};

using Weights = std::vector<QleBlockMatrix>;  // the five matrices in kMatrices order
using Packed = QlePacked<Weights>;

const QleOpSpec& spec(bool seq) {
  static const std::vector<const char*> names = {
      "x", "C", "n", "m", "norm_mlstm_weight", "norm_mlstm_bias", "W_qkvo", "b_qkvo", "W_if", "b_if",
      "head_norm_weight", "head_norm_bias", "W_out", "b_out", "norm_ffn_weight", "norm_ffn_bias", "W_up", "b_up",
      "W_down", "b_down", "gate_soft_cap", "q_scale", "eps", "W_qkvo_scale", "W_if_scale", "W_out_scale",
      "W_up_scale", "W_down_scale"};
  static const std::vector<const char*> seq_names = [] {
    std::vector<const char*> v = names;
    v[1] = "C0", v[2] = "n0", v[3] = "m0";
    return v;
  }();
  static const std::vector<ONNXTensorElementDataType> types(kRegular, kQleF32), outputs(4, kQleF32);
  static const QleOpSpec cell{"xLSTMLargeBlock", false, names, types, outputs, {6, 8, 12, 16, 18}, false,
                              {20, 21, 22}, {"norm_eps"}};
  static const QleOpSpec sequence{"xLSTMLargeBlockSequence", true, seq_names, types, outputs, {6, 8, 12, 16, 18},
                                  false, {20, 21, 22}, {"norm_eps"}};
  return seq ? sequence : cell;
}

// The matrices' sizes from C and W_down, and their (and their scales') shapes. Needs only C, W_down, the
// matrices and the scales loaded (prepack) and E.
OrtStatusPtr check_matrices(const QleOpInputs& in, long block, int64_t E, Dims* d) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(1, 4, "[B, NH, DK, DV]")) || (st = in.rank(18, 2, "[U, E]"))) return st;
  const std::vector<int64_t>& cs = in.shape[1];
  d->E = E, d->NH = cs[1], d->DK = cs[2], d->DV = cs[3], d->U = in.shape[18][0];
  if ((st = in.sizes({qle_size_error("the embedding size E", "x's last dimension", E, 1, kQleMaxWidth),
                      qle_size_error("the head count NH", "C's second dimension", d->NH, 1, kQleMaxHeads),
                      qle_size_error("the key size DK", "C's third dimension", d->DK, 1, kQleMaxWidth),
                      qle_size_error("the value size DV", "C's last dimension", d->DV, 1, kQleMaxWidth),
                      qle_size_error("the FFN size U", "W_down's first dimension", d->U, 1, kQleMaxWidth)})) ||
      (st = in.sizes({qle_size_error("the width 2 NH DK + 2 NH DV", "C's dimensions",
                                     2 * d->NH * d->DK + 2 * d->NH * d->DV, 1, kQleMaxWidth)})))
    return st;
  static const char* const layouts[5][2] = {
      {"[E, 2QK + 2V]", "[E, ceil((2QK + 2V) / 2)] (int4 two per byte)"},
      {"[E, 2NH]", "[E, NH] (int4 two per byte)"},
      {"[V, E]", "[V, ceil(E / 2)] (int4 two per byte)"},
      {"[E, 2U]", "[E, U] (int4 two per byte)"},
      {"[U, E]", "[U, ceil(E / 2)] (int4 two per byte)"}};
  for (size_t j = 0; j < 5; ++j) {
    const size_t i = kMatrices[j];
    if ((st = in.expect(i, {d->K(j), in.width(i, d->N(j))}, in.layout(i, layouts[j][0], layouts[j][1])))) return st;
    if (qle_qmode_integer(in.mode) &&
        (st = in.expect(kRegular + j, qle_scale_shape(in.mode, block, {}, d->K(j), d->N(j)),
                        in.mode == QleQMode::I4 ? "[ceil(K / block_size), N] of its matrix [K, N]"
                                                : "[N] of its matrix [K, N] (one scale per output channel)")))
      return st;
  }
  return in.dynamic_limit({{"E", E}, {"V", d->NH * d->DV}, {"U", d->U}});
}

OrtStatusPtr check(const QleOpInputs& in, long block, bool seq, Dims* d) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 3 : 2, seq ? "[B, T, E]" : "[B, E]"))) return st;
  const std::vector<int64_t>& xs = in.shape[0];
  d->B = xs[0], d->T = seq ? xs[1] : 1;
  if ((st = check_matrices(in, block, xs.back(), d))) return st;
  const int64_t B = d->B, E = d->E, NH = d->NH, V = NH * d->DV;
  if ((st = in.expect(1, {B, NH, d->DK, d->DV}, "[B, NH, DK, DV]")) ||
      (st = in.expect(2, {B, NH, d->DK}, "[B, NH, DK]")) || (st = in.expect(3, {B, NH, 1}, "[B, NH, 1]")))
    return st;
  const struct { size_t i; int64_t n; const char* layout; } vectors[] = {  // the biases and norm weights
      {4, E, "[E]"}, {5, E, "[E]"}, {7, d->N(0), "[2QK + 2V]"}, {9, 2 * NH, "[2NH]"}, {10, V, "[V]"}, {11, V, "[V]"},
      {13, E, "[E]"}, {14, E, "[E]"}, {15, E, "[E]"}, {17, 2 * d->U, "[2U]"}, {19, E, "[E]"}};
  for (const auto& v : vectors)
    if ((st = in.expect(v.i, {v.n}, v.layout))) return st;
  return nullptr;
}

// Packs the five matrices [K_j, N_j] (and their scales) into *w.
const char* pack(const QleOpInputs& in, long block, const int64_t (&K)[5], const int64_t (&N)[5], Weights* w) {
  w->resize(5);
  for (size_t j = 0; j < 5; ++j) {
    const size_t i = kMatrices[j];
    if (const char* e = qle_qmatrix_pack(in.mode, block, in.data[i], in.type[i], 0, in.scale(kRegular + j),
                                         (long)K[j], (long)N[j], &(*w)[j].w))
      return e;
  }
  return nullptr;
}

const char* pack_checked(const QleOpInputs& in, long block, const Dims& d, Weights* w) {
  int64_t K[5], N[5];
  for (size_t j = 0; j < 5; ++j) K[j] = d.K(j), N[j] = d.N(j);
  return pack(in, block, K, N, w);
}

OrtStatusPtr run(Ort::KernelContext& ctx, const QleCpuKernels* k, const QleOpInputs& in, const Packed& pk) {
  const bool seq = in.op.sequence;
  Dims d;
  if (OrtStatusPtr st = check(in, pk.block, seq, &d)) return st;
  Weights local;
  const Weights* w = nullptr;
  if (OrtStatusPtr st = pk.get(in, &local, [&](Weights* l) { return pack_checked(in, pk.block, d, l); }, &w)) return st;
  QleLargeBlockArgs a{};
  if (OrtStatusPtr st = in.scalar(20, &a.gate_soft_cap)) return st;
  if (OrtStatusPtr st = in.scalar(21, &a.q_scale)) return st;
  if (OrtStatusPtr st = in.scalar(22, &a.eps)) return st;
  a.B = d.B, a.T = d.T, a.E = d.E, a.NH = d.NH, a.DK = d.DK, a.DV = d.DV, a.U = d.U;
  a.norm_eps = pk.attributes[0];
  a.x = in.f(0), a.C = in.f(1), a.n = in.f(2), a.m = in.f(3);
  a.norm_mlstm_w = in.f(4), a.norm_mlstm_b = in.f(5), a.b_qkvo = in.f(7), a.b_if = in.f(9);
  a.head_norm_w = in.f(10), a.head_norm_b = in.f(11), a.b_out = in.f(13), a.norm_ffn_w = in.f(14);
  a.norm_ffn_b = in.f(15), a.b_up = in.f(17), a.b_down = in.f(19);
  a.W_qkvo = &(*w)[0], a.W_if = &(*w)[1], a.W_out = &(*w)[2], a.W_up = &(*w)[3], a.W_down = &(*w)[4];
  a.Y = qle_output(ctx, 0, seq ? std::vector<int64_t>{d.B, d.T, d.E} : std::vector<int64_t>{d.B, d.E});
  a.C_out = qle_output(ctx, 1, {d.B, d.NH, d.DK, d.DV});
  a.n_out = qle_output(ctx, 2, {d.B, d.NH, d.DK});
  a.m_out = qle_output(ctx, 3, {d.B, d.NH, 1});
  qle_large_block(k, a);
  return nullptr;
}

// Packs constant matrices (and their scales) once per kernel, float32 ones in column panels.
void prepack(const QleOpInputs& in, Packed* pk) {
  int64_t K[5], N[5];
  for (size_t j = 0; j < 5; ++j)
    if (!qle_constant_matrix_sizes(in, pk->block, kMatrices[j], kRegular + j, 0, &K[j], &N[j])) return;
  std::unique_ptr<Weights> w(new Weights);
  if (const char* e = pack(in, pk->block, K, N, w.get())) {
    pk->error = e;
    return;
  }
  if (in.mode == QleQMode::F32)
    for (QleBlockMatrix& m : *w) qle_block_panels(&m);
  pk->w = std::move(w);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  qle_append_ops<QleCpuOp<Weights, run, prepack, true>>({&spec(false), &spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace

const QleOpSpec& qle_large_block_spec(bool seq) { return spec(seq); }

OrtStatusPtr qle_check_large_block(const QleOpInputs& in, long block, bool seq, QleLargeBlockDims* dims) {
  Dims d{};
  OrtStatusPtr st = check(in, block, seq, &d);
  *dims = QleLargeBlockDims{d.B, d.T, d.E, d.NH, d.DK, d.DV, d.U};
  return st;
}
