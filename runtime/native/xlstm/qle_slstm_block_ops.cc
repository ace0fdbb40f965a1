// sLSTMBlock / sLSTMBlockSequence: their specs, shape checks and CPU op (weight packing, arguments),
// registered with the library's domain by a static registrar (qle_registry.h); the specs and checks are the
// CUDA op's too (qle_slstm_block_ops.h). The kernel is in qle_slstm_block.cc.
// Inputs (E = NH DH; NH, DH from R, KS from the conv window, U from W_down):
//   0 x [B, E] (sequence: [B, T, E]), 1 conv [B, KS, E], 2 y, 3 c, 4 n, 5 m [B, E],
//   6 norm_weight, 7 norm_bias [E], 8 conv_weight [KS, E], 9 conv_bias [E], 10 W_gates [4, NH, DH, DH],
//   11 b_gates [4E], 12 R [4, NH, DH, DH], 13 b [4E], 14 group_norm_weight, 15 group_norm_bias,
//   16 ffn_norm_weight, 17 ffn_norm_bias [E], 18 W_up [E, 2U], 19 b_up, 20 W_down [U, E], 21 b_down;
//   the integer modes append the four matrices' scales (22..25). The float attribute norm_eps is the
//   epsilon of the three norms; the string attribute ffn_act names the FFN's activation (absent: gelu).
// Quantized nodes follow exporters/quantize.py's contract (qle_qmatrix.h; W_gates and R are stacked,
// as the sLSTM cell's R); constant matrices (initializers) are packed once per kernel (float32 W_up and
// W_down in column panels, qle_block_core.h), others on every call.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <memory>
#include <vector>

#include "qle_contract.h"
#include "qle_cpu_ops.h"
#include "qle_registry.h"
#include "qle_shape.h"
#include "qle_slstm_block.h"
#include "qle_slstm_block_ops.h"
#include "qle_xlstm.h"

namespace {

constexpr size_t kGates = 10, kR = 12, kUp = 18, kDown = 20, kRegular = 22;

struct Dims {
  int64_t B, T, E, NH, DH, KS, U;
};

struct Weights {
  std::vector<QleQMatrix> gates, R;  // 4 NH head slices each
  QleBlockMatrix up, down;
};
using Packed = QlePacked<Weights>;

const QleOpSpec& spec(bool seq) {
  static const std::vector<const char*> names = {
      "x", "conv", "y", "c", "n", "m", "norm_weight", "norm_bias", "conv_weight", "conv_bias", "W_gates", "b_gates",
      "R", "b", "group_norm_weight", "group_norm_bias", "ffn_norm_weight", "ffn_norm_bias", "W_up", "b_up",
      "W_down", "b_down", "W_gates_scale", "R_scale", "W_up_scale", "W_down_scale"};
  static const std::vector<const char*> seq_names = [] {
    std::vector<const char*> v = names;
    v[1] = "conv0", v[2] = "y0", v[3] = "c0", v[4] = "n0", v[5] = "m0";
    return v;
  }();
  static const std::vector<ONNXTensorElementDataType> types(kRegular, kQleF32), outputs(6, kQleF32);
  // the FFN's activation, in QleFfnAct's order (qle_block_math.h)
  static const std::vector<QleChoice> ffn_act = {{"ffn_act", {"gelu", "relu", "relu^2", "sigmoid", "swish", "selu"}}};
  static const QleOpSpec cell{"sLSTMBlock", false, names, types, outputs, {kGates, kR, kUp, kDown}, false, {},
                              {"norm_eps"}, ffn_act};
  static const QleOpSpec sequence{"sLSTMBlockSequence", true, seq_names, types, outputs, {kGates, kR, kUp, kDown},
                                  false, {}, {"norm_eps"}, ffn_act};
  return seq ? sequence : cell;
}

// NH, DH (so E) from R and U from W_down, and the four matrices' (and their scales') shapes. Needs only
// the matrices and the scales loaded (prepack).
OrtStatusPtr check_matrices(const QleOpInputs& in, long block, Dims* d) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(kR, 4, "[4, NH, DH, DH]")) || (st = in.rank(kDown, 2, "[U, E]"))) return st;
  d->NH = in.shape[kR][1], d->DH = in.shape[kR][2], d->U = in.shape[kDown][0];
  if ((st = in.sizes({qle_size_error("the head count NH", "R's second dimension", d->NH, 1, kQleMaxHeads),
                      qle_size_error("the head size DH", "R's third dimension", d->DH, 1, kQleMaxWidth),
                      qle_size_error("the FFN size U", "W_down's first dimension", d->U, 1, kQleMaxWidth)})) ||
      (st = in.sizes({qle_size_error("the embedding size E = NH * DH", "R's second and third dimensions",
                                     d->NH * d->DH, 1, kQleMaxWidth)})))
    return st;
  const int64_t NH = d->NH, DH = d->DH, E = NH * DH, U = d->U;
  d->E = E;
  for (size_t i : {kGates, kR})
    if ((st = in.expect(i, {4, NH, DH, in.width(i, DH)},
                        in.layout(i, "[4, NH, DH, DH]", "[4, NH, DH, ceil(DH / 2)] (int4 two per byte)"))))
      return st;
  if ((st = in.expect(kUp, {E, in.width(kUp, 2 * U)}, in.layout(kUp, "[E, 2U]", "[E, U] (int4 two per byte)"))) ||
      (st = in.expect(kDown, {U, in.width(kDown, E)},
                      in.layout(kDown, "[U, E]", "[U, ceil(E / 2)] (int4 two per byte)"))))
    return st;
  if (qle_qmode_integer(in.mode)) {
    const bool i4 = in.mode == QleQMode::I4;
    for (size_t j : {0, 1})
      if ((st = in.expect(kRegular + j, qle_scale_shape(in.mode, block, {4, NH}, DH, DH),
                          i4 ? "[4, NH, ceil(DH / block_size), DH]"
                             : "[4, NH, DH] (one scale per output channel of each slice)")))
        return st;
    const char* dense = i4 ? "[ceil(K / block_size), N] of its matrix [K, N]"
                           : "[N] of its matrix [K, N] (one scale per output channel)";
    if ((st = in.expect(kRegular + 2, qle_scale_shape(in.mode, block, {}, E, 2 * U), dense)) ||
        (st = in.expect(kRegular + 3, qle_scale_shape(in.mode, block, {}, U, E), dense)))
      return st;
  }
  return in.dynamic_limit({{"DH", DH}, {"E", E}, {"U", U}});
}

OrtStatusPtr check(const QleOpInputs& in, long block, bool seq, Dims* d) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 3 : 2, seq ? "[B, T, E]" : "[B, E]")) || (st = in.rank(1, 3, "[B, KS, E]")) ||
      (st = check_matrices(in, block, d)))
    return st;
  const std::vector<int64_t>& xs = in.shape[0];
  d->B = xs[0], d->T = seq ? xs[1] : 1, d->KS = in.shape[1][1];
  const int64_t B = d->B, E = d->E;
  if ((st = in.sizes({qle_size_error("the conv kernel size KS", "conv's second dimension", d->KS, 1, kQleMaxWidth)})) ||
      (st = in.expect(0, seq ? std::vector<int64_t>{B, d->T, E} : std::vector<int64_t>{B, E},
                      seq ? "[B, T, E] (E = NH * DH from R)" : "[B, E] (E = NH * DH from R)")) ||
      (st = in.expect(1, {B, d->KS, E}, "[B, KS, E]")) || (st = in.expect(8, {d->KS, E}, "[KS, E] (KS from conv)")))
    return st;
  for (size_t i = 2; i <= 5; ++i)
    if ((st = in.expect(i, {B, E}, "[B, E]"))) return st;
  const struct { size_t i; int64_t n; const char* layout; } vectors[] = {  // the biases and norm weights
      {6, E, "[E]"},  {7, E, "[E]"},  {9, E, "[E]"},  {11, 4 * E, "[4E]"}, {13, 4 * E, "[4E]"}, {14, E, "[E]"},
      {15, E, "[E]"}, {16, E, "[E]"}, {17, E, "[E]"}, {19, 2 * d->U, "[2U]"}, {21, E, "[E]"}};
  for (const auto& v : vectors)
    if ((st = in.expect(v.i, {v.n}, v.layout))) return st;
  return nullptr;
}

const char* pack(const QleOpInputs& in, long block, const Dims& d, Weights* w) {
  const long NH = (long)d.NH, DH = (long)d.DH, E = (long)d.E, U = (long)d.U;
  if (const char* e = qle_slstm_pack(in.mode, block, in.data[kGates], in.type[kGates], in.scale(kRegular), NH, DH,
                                     &w->gates))
    return e;
  if (const char* e = qle_slstm_pack(in.mode, block, in.data[kR], in.type[kR], in.scale(kRegular + 1), NH, DH, &w->R))
    return e;
  if (const char* e = qle_qmatrix_pack(in.mode, block, in.data[kUp], in.type[kUp], 0, in.scale(kRegular + 2), E,
                                       2 * U, &w->up.w))
    return e;
  return qle_qmatrix_pack(in.mode, block, in.data[kDown], in.type[kDown], 0, in.scale(kRegular + 3), U, E, &w->down.w);
}

OrtStatusPtr run(Ort::KernelContext& ctx, const QleCpuKernels* k, const QleOpInputs& in, const Packed& pk) {
  const bool seq = in.op.sequence;
  Dims d;
  if (OrtStatusPtr st = check(in, pk.block, seq, &d)) return st;
  Weights local;
  const Weights* w = nullptr;
  if (OrtStatusPtr st = pk.get(in, &local, [&](Weights* l) { return pack(in, pk.block, d, l); }, &w)) return st;
  QleSlstmBlockArgs a{};
  a.B = d.B, a.T = d.T, a.E = d.E, a.NH = d.NH, a.KS = d.KS, a.U = d.U;
  a.norm_eps = pk.attributes[0], a.ffn_act = pk.choices[0];
  a.x = in.f(0), a.conv = in.f(1), a.y = in.f(2), a.c = in.f(3), a.n = in.f(4), a.m = in.f(5);
  a.norm_w = in.f(6), a.norm_b = in.f(7), a.conv_w = in.f(8), a.conv_b = in.f(9), a.b_gates = in.f(11);
  a.b = in.f(13), a.group_norm_w = in.f(14), a.group_norm_b = in.f(15), a.ffn_norm_w = in.f(16);
  a.ffn_norm_b = in.f(17), a.b_up = in.f(19), a.b_down = in.f(21);
  a.W_gates = w->gates.data(), a.R = w->R.data(), a.W_up = &w->up, a.W_down = &w->down;
  a.H = qle_output(ctx, 0, seq ? std::vector<int64_t>{d.B, d.T, d.E} : std::vector<int64_t>{d.B, d.E});
  a.conv_out = qle_output(ctx, 1, {d.B, d.KS, d.E});
  a.y_out = qle_output(ctx, 2, {d.B, d.E});
  a.c_out = qle_output(ctx, 3, {d.B, d.E});
  a.n_out = qle_output(ctx, 4, {d.B, d.E});
  a.m_out = qle_output(ctx, 5, {d.B, d.E});
  qle_slstm_block(k, a);
  return nullptr;
}

// Packs constant matrices (and their scales) once per kernel when they pass the checks, float32 W_up
// and W_down in column panels.
void prepack(const QleOpInputs& in, Packed* pk) {
  Dims d{};
  if (!qle_check_passed(check_matrices(in, pk->block, &d))) return;
  std::unique_ptr<Weights> w(new Weights);
  if (const char* e = pack(in, pk->block, d, w.get())) {
    pk->error = e;
    return;
  }
  if (in.mode == QleQMode::F32) {
    qle_block_panels(&w->up);
    qle_block_panels(&w->down);
  }
  pk->w = std::move(w);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  qle_append_ops<QleCpuOp<Weights, run, prepack, true>>({&spec(false), &spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace

const QleOpSpec& qle_slstm_block_spec(bool seq) { return spec(seq); }

OrtStatusPtr qle_check_slstm_block(const QleOpInputs& in, long block, bool seq, QleSlstmBlockDims* dims) {
  Dims d{};
  OrtStatusPtr st = check(in, block, seq, &d);
  *dims = QleSlstmBlockDims{d.B, d.T, d.E, d.NH, d.DH, d.KS, d.U};
  return st;
}
