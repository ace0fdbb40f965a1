// sLSTM and mLSTM ops (qle_xlstm_ops.h): their specs and shape checks, and their CPU ops (weight
// packing, argument filling, threading), registered with the library's domain by a static registrar
// (qle_registry.h). The kernels are in qle_xlstm.cc. Constant sLSTM weights (initializers) are packed
// once per kernel, others on every call.
#include "qle_xlstm_ops.h"

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <memory>
#include <string>
#include <vector>

#include "qle_cpu_ops.h"
#include "qle_registry.h"
#include "qle_shape.h"
#include "qle_xlstm.h"

namespace {

using Inputs = QleOpInputs;

using SlstmWeights = std::vector<QleQMatrix>;  // the 4 NH slices of R
using Packed = QlePacked<SlstmWeights>;

const char* pack_slstm(const Inputs& in, long block, int64_t NH, int64_t DH, std::vector<QleQMatrix>* R) {
  return qle_slstm_pack(in.mode, block, in.data[5], in.type[5], in.scale(7), (long)NH, (long)DH, R);
}

OrtStatusPtr run_slstm(Ort::KernelContext& ctx, const QleCpuKernels* k, const Inputs& in, const Packed& pk) {
  const bool seq = in.op.sequence;
  QleSlstmDims d;
  if (OrtStatusPtr st = qle_check_slstm(in, pk.block, seq, &d)) return st;
  SlstmWeights local;
  const SlstmWeights* R = nullptr;
  if (OrtStatusPtr st =
          pk.get(in, &local, [&](SlstmWeights* l) { return pack_slstm(in, pk.block, d.NH, d.DH, l); }, &R))
    return st;
  const QleSlstmOutputs o = qle_slstm_outputs(ctx, d, seq);
  QleSlstmArgs a{};
  a.B = d.B, a.T = d.T, a.NH = d.NH, a.DH = d.DH;
  a.x = in.f(0), a.y = in.f(1), a.c = in.f(2), a.n = in.f(3), a.m = in.f(4), a.R = R->data(), a.b = in.f(6);
  a.Y = o.Y, a.y_out = o.y, a.c_out = o.c, a.n_out = o.n, a.m_out = o.m;
  QleRanges<QleSlstmArgs, qle_slstm_rows> job{k, &a, (long)d.B, (long)d.B};
  job.run(ctx, (long)qle_mul_sat(qle_mul_sat(d.B, d.T), qle_mul_sat(4 * d.H, d.DH)));
  return nullptr;
}

OrtStatusPtr run_mlstm(Ort::KernelContext& ctx, const QleCpuKernels* k, const Inputs& in,
                       const QlePacked<QleNoWeights>&) {
  const bool seq = in.op.sequence;
  QleMlstmDims d;
  if (OrtStatusPtr st = qle_check_mlstm(in, seq, &d)) return st;
  QleMlstmArgs a{};
  qle_mlstm_args(in, d, qle_mlstm_outputs(ctx, d, seq), &a);
  const long streams = (long)(d.B * d.NH);
  QleRanges<QleMlstmArgs, qle_mlstm_streams> job{k, &a, streams, streams};
  job.run(ctx, (long)qle_mul_sat(qle_mul_sat(streams, d.T), qle_mul_sat(3 * d.DK, d.DV)));
  return nullptr;
}

// Packs a constant R (and its scales) of the contract's shape; fp32 weights need no packing (the
// kernel reads them in place).
void prepack(const Inputs& in, Packed* pk) {
  if (in.shape[5].size() != 4) return;
  const int64_t NH = in.shape[5][1], DH = in.shape[5][2];
  if (!qle_check_passed(qle_check_slstm_matrices(in, pk->block, NH, DH))) return;
  std::unique_ptr<SlstmWeights> R(new SlstmWeights);
  if (const char* e = pack_slstm(in, pk->block, NH, DH, R.get()))
    pk->error = e;
  else
    pk->w = std::move(R);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  qle_append_ops<QleCpuOp<SlstmWeights, run_slstm, prepack>>({&qle_slstm_spec(false), &qle_slstm_spec(true)}, out);
  qle_append_ops<QleCpuOp<QleNoWeights, run_mlstm, nullptr>>({&qle_mlstm_spec(false), &qle_mlstm_spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace

const QleOpSpec& qle_slstm_spec(bool seq) {
  static const std::vector<ONNXTensorElementDataType> types(7, kQleF32);
  static const QleOpSpec cell{
      "sLSTMCell", false, {"x", "y", "c", "n", "m", "R", "b", "R_scale"}, types, {kQleF32, kQleF32, kQleF32, kQleF32},
      {5},         false, {}};
  static const QleOpSpec sequence{"sLSTMSequence",
                                  true,
                                  {"x", "y0", "c0", "n0", "m0", "R", "b", "R_scale"},
                                  types,
                                  {kQleF32, kQleF32, kQleF32, kQleF32, kQleF32},
                                  {5},
                                  false,
                                  {}};
  return seq ? sequence : cell;
}

const QleOpSpec& qle_mlstm_spec(bool seq) {
  static const std::vector<ONNXTensorElementDataType> types(11, kQleF32), outputs(4, kQleF32);
  static const QleOpSpec cell{"mLSTMCell",
                              false,
                              {"q", "k", "v", "i", "f", "C", "n", "m", "q_scale", "k_scale", "eps"},
                              types,
                              outputs,
                              {},
                              false,
                              {8, 9, 10}};
  static const QleOpSpec sequence{"mLSTMSequence",
                                  true,
                                  {"q", "k", "v", "i", "f", "C0", "n0", "m0", "q_scale", "k_scale", "eps"},
                                  types,
                                  outputs,
                                  {},
                                  false,
                                  {8, 9, 10}};
  return seq ? sequence : cell;
}

OrtStatusPtr qle_check_slstm_matrices(const QleOpInputs& in, long block, int64_t NH, int64_t DH) {
  OrtStatusPtr st = nullptr;
  if ((st = in.sizes({qle_size_error("the head count NH", "R's second dimension", NH, 1, kQleMaxHeads),
                             qle_size_error("the head size DH", "R's third dimension", DH, 1, kQleMaxWidth)})) ||
      (st = in.sizes({qle_size_error("the hidden size H = NH * DH", "R's second and third dimensions", NH * DH,
                                            1, kQleMaxWidth)})) ||
      (st = in.expect(5, {4, NH, DH, in.width(5, DH)},
                      in.layout(5, "[4, NH, DH, DH]", "[4, NH, DH, ceil(DH / 2)] (int4 two per byte)"))))
    return st;
  if (qle_qmode_integer(in.mode) &&
      (st = in.expect(7, qle_scale_shape(in.mode, block, {4, NH}, DH, DH),
                      in.mode == QleQMode::I4 ? "[4, NH, ceil(DH / block_size), DH]"
                                              : "[4, NH, DH] (one scale per output channel of each slice)")))
    return st;
  return in.dynamic_limit({{"DH", DH}});
}

OrtStatusPtr qle_check_slstm(const QleOpInputs& in, long block, bool seq, QleSlstmDims* dims) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 3 : 2, seq ? "[B, T, 4H]" : "[B, 4H]")) || (st = in.rank(5, 4, "[4, NH, DH, DH]")))
    return st;
  const std::vector<int64_t>& xs = in.shape[0];
  const int64_t B = xs[0], T = seq ? xs[1] : 1, NH = in.shape[5][1], DH = in.shape[5][2];
  if ((st = qle_check_slstm_matrices(in, block, NH, DH))) return st;
  const int64_t H = NH * DH;  // bounded by the check above
  if ((st = in.expect(0, seq ? std::vector<int64_t>{B, T, 4 * H} : std::vector<int64_t>{B, 4 * H},
                      seq ? "[B, T, 4H] (H = NH * DH from R)" : "[B, 4H] (H = NH * DH from R)")))
    return st;
  for (size_t i = 1; i <= 4; ++i)
    if ((st = in.expect(i, {B, H}, "[B, H]"))) return st;
  if ((st = in.expect(6, {4 * H}, "[4H]"))) return st;
  *dims = QleSlstmDims{B, T, NH, DH, H};
  return nullptr;
}

QleSlstmOutputs qle_slstm_outputs(Ort::KernelContext& ctx, const QleSlstmDims& d, bool seq) {
  const std::vector<int64_t> state = {d.B, d.H};
  QleSlstmOutputs o{};
  size_t i = 0;
  o.Y = seq ? qle_output(ctx, i++, {d.B, d.T, d.H}) : nullptr;
  o.y = qle_output(ctx, i++, state);
  o.c = qle_output(ctx, i++, state);
  o.n = qle_output(ctx, i++, state);
  o.m = qle_output(ctx, i++, state);
  return o;
}

OrtStatusPtr qle_check_mlstm(const QleOpInputs& in, bool seq, QleMlstmDims* dims) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 4 : 3, seq ? "[B, T, NH, DK]" : "[B, NH, DK]")) ||
      (st = in.rank(2, seq ? 4 : 3, seq ? "[B, T, NH, DV]" : "[B, NH, DV]")))
    return st;
  const std::vector<int64_t>& qs = in.shape[0];
  const int64_t B = qs[0], T = seq ? qs[1] : 1, NH = qs[seq ? 2 : 1], DK = qs.back(), DV = in.shape[2].back();
  if ((st = in.sizes({qle_size_error("the head count NH", seq ? "q's third dimension" : "q's second dimension",
                                            NH, 1, kQleMaxHeads),
                             qle_size_error("the key size DK", "q's last dimension", DK, 1, kQleMaxWidth),
                             qle_size_error("the value size DV", "v's last dimension", DV, 1, kQleMaxWidth)})))
    return st;
  const std::vector<int64_t> lead = seq ? std::vector<int64_t>{B, T, NH} : std::vector<int64_t>{B, NH};
  std::vector<int64_t> kshape = lead, vshape = lead;
  kshape.push_back(DK);
  vshape.push_back(DV);
  const char* gate_layout = seq ? "[B, T, NH]" : "[B, NH]";
  if ((st = in.expect(1, kshape, seq ? "[B, T, NH, DK] (as q)" : "[B, NH, DK] (as q)")) ||
      (st = in.expect(2, vshape, seq ? "[B, T, NH, DV]" : "[B, NH, DV]")) ||
      (st = in.expect(3, lead, gate_layout)) || (st = in.expect(4, lead, gate_layout)) ||
      (st = in.expect(5, {B, NH, DK, DV}, "[B, NH, DK, DV]")) || (st = in.expect(6, {B, NH, DK}, "[B, NH, DK]")) ||
      (st = in.expect(7, {B, NH, 1}, "[B, NH, 1]")))
    return st;
  QleMlstmDims d{B, T, NH, DK, DV, 0.0f, 0.0f, 0.0f};
  if ((st = in.scalar(8, &d.q_scale)) || (st = in.scalar(9, &d.k_scale)) || (st = in.scalar(10, &d.eps))) return st;
  *dims = d;
  return nullptr;
}

QleMlstmOutputs qle_mlstm_outputs(Ort::KernelContext& ctx, const QleMlstmDims& d, bool seq) {
  QleMlstmOutputs o{};
  o.H = qle_output(ctx, 0, seq ? std::vector<int64_t>{d.B, d.T, d.NH, d.DV} : std::vector<int64_t>{d.B, d.NH, d.DV});
  o.C = qle_output(ctx, 1, {d.B, d.NH, d.DK, d.DV});
  o.n = qle_output(ctx, 2, {d.B, d.NH, d.DK});
  o.m = qle_output(ctx, 3, {d.B, d.NH, 1});
  return o;
}

void qle_mlstm_args(const QleOpInputs& in, const QleMlstmDims& d, const QleMlstmOutputs& o, QleMlstmArgs* a) {
  a->B = d.B, a->T = d.T, a->NH = d.NH, a->DK = d.DK, a->DV = d.DV;
  a->q_scale = d.q_scale, a->k_scale = d.k_scale, a->eps = d.eps;
  a->q = in.f(0), a->k = in.f(1), a->v = in.f(2), a->i = in.f(3), a->f = in.f(4);
  a->C = in.f(5), a->n = in.f(6), a->m = in.f(7);
  a->Hout = o.H, a->C_out = o.C, a->n_out = o.n, a->m_out = o.m;
}
