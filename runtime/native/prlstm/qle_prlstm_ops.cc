// PR-LSTM ops (qle_prlstm_ops.h): their specs and shape checks, and their CPU ops (weight packing,
// argument filling, threading), registered with the library's domain by a static registrar
// (qle_registry.h). The kernel is in qle_prlstm.cc. Constant weights (initializers) are packed once
// per kernel, others on every call.
#include "qle_prlstm_ops.h"

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <memory>
#include <string>
#include <vector>

#include "qle_cpu_ops.h"
#include "qle_registry.h"
#include "qle_shape.h"
#include "qle_prlstm.h"

namespace {

constexpr long kMaxStackLevels = 62;  // count is int64

using Inputs = QleOpInputs;

using Packed = QlePacked<QlePrlstmWeights>;

const char* pack_pr(const Inputs& in, long block, int64_t D, int64_t H, int64_t R, QlePrlstmWeights* w) {
  const ONNXTensorElementDataType types[3] = {in.type[6], in.type[8], in.type[10]};
  return qle_prlstm_pack(in.mode, block, in.data[6], in.data[8], in.data[10], types, in.scale(12), in.scale(13),
                         in.scale(14), (long)D, (long)H, (long)R, w);
}

OrtStatusPtr run_prlstm(Ort::KernelContext& ctx, const QleCpuKernels* k, const Inputs& in, const Packed& pk) {
  const bool seq = in.op.sequence;
  QlePrDims d;
  if (OrtStatusPtr st = qle_check_prlstm(in, pk.block, seq, &d)) return st;
  QlePrlstmWeights local;
  const QlePrlstmWeights* w = nullptr;
  if (OrtStatusPtr st =
          pk.get(in, &local, [&](QlePrlstmWeights* l) { return pack_pr(in, pk.block, d.D, d.H, d.R, l); }, &w))
    return st;
  const int64_t B = d.B, T = d.T, D = d.D, H = d.H, R = d.R;
  std::vector<float> xbuf;
  const float* x = in.f(0);
  if (in.mode == QleQMode::F16) {  // x float16: its values as float32
    xbuf.resize((size_t)(B * T * D));
    qle_f16_to_f32((long)(B * T * D), static_cast<const uint16_t*>(in.data[0]), xbuf.data());
    x = xbuf.data();
  }
  const QlePrOutputs o = qle_prlstm_outputs(ctx, d, seq);
  QlePrlstmArgs a{};
  a.B = B, a.T = T, a.D = D, a.H = H, a.K = d.K, a.R = R;
  a.x = x;
  a.block_h = in.f(1), a.block_c = in.f(2), a.prefix_h = in.f(3), a.prefix_c = in.f(4);
  a.count = static_cast<const int64_t*>(in.data[5]);
  a.w = w;
  a.b_leaf = in.f(7), a.b_merge = in.f(9), a.b_unary = in.f(11);
  a.Y = o.Y, a.block_h_out = o.block_h, a.block_c_out = o.block_c;
  a.prefix_h_out = o.prefix_h, a.prefix_c_out = o.prefix_c, a.count_out = o.count;
  QleRanges<QlePrlstmArgs, qle_prlstm_rows> job{k, &a, (long)B, (long)B};
  // per token; below 2^62 within the checked bounds (qle_shape.h)
  const int64_t token = D * 3 * H + 2 * (10 + 4 * R) * H * H;
  job.run(ctx, (long)qle_mul_sat(qle_mul_sat(B, T), token));
  return nullptr;
}

// Packs constant W_leaf, W_merge, W_unary (and their scales) of the contract's shapes; fp32 weights
// need no packing (the kernel reads them in place).
void prepack(const Inputs& in, Packed* pk) {
  if (in.shape[6].size() != 2 || in.shape[10].size() != 3) return;
  const int64_t D = in.shape[6][0], R = in.shape[10][0], H = in.shape[10][1];
  if (!qle_check_passed(qle_check_pr_matrices(in, pk->block, D, H, R))) return;
  std::unique_ptr<QlePrlstmWeights> w(new QlePrlstmWeights);
  if (const char* e = pack_pr(in, pk->block, D, H, R, w.get()))
    pk->error = e;
  else
    pk->w = std::move(w);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  typedef QleCpuOp<QlePrlstmWeights, run_prlstm, prepack> Op;
  qle_append_ops<Op>({&qle_prlstm_spec(false), &qle_prlstm_spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace

const QleOpSpec& qle_prlstm_spec(bool seq) {
  static const std::vector<const char*> inputs = {
      "x",       "block_h", "block_c", "prefix_h", "prefix_c",     "count",         "W_leaf",      "b_leaf",
      "W_merge", "b_merge", "W_unary", "b_unary",  "W_leaf_scale", "W_merge_scale", "W_unary_scale"};
  static const std::vector<ONNXTensorElementDataType> types = {kQleF32, kQleF32, kQleF32, kQleF32, kQleF32, kQleI64,
                                                               kQleF32, kQleF32, kQleF32, kQleF32, kQleF32, kQleF32};
  static const std::vector<ONNXTensorElementDataType> outputs = {kQleF32, kQleF32, kQleF32, kQleF32, kQleF32, kQleI64};
  static const QleOpSpec step{"PRLSTMStep", false, inputs, types, outputs, {6, 8, 10}, true, {5}};
  static const QleOpSpec sequence{"PRLSTMSequence", true, inputs, types, outputs, {6, 8, 10}, true, {5}};
  return seq ? sequence : step;
}

OrtStatusPtr qle_check_pr_matrices(const QleOpInputs& in, long block, int64_t D, int64_t H, int64_t R) {
  OrtStatusPtr st = nullptr;
  if ((st = in.sizes({qle_size_error("the input size D", "x's last dimension, W_leaf's first", D, 1,
                                            kQleMaxWidth),
                             qle_size_error("the hidden size H", "block_h's last dimension, W_unary's second", H, 1,
                                            kQleMaxWidth),
                             qle_size_error("the number of unary refinements R", "W_unary's first dimension", R, 0,
                                            kQleMaxRefinements)})) ||
      (st = in.expect(6, {D, in.width(6, 3 * H)},
                      in.layout(6, "[D, 3H] (input-major)", "[D, ceil(3H / 2)] (input-major, int4 two per byte)"))) ||
      (st = in.expect(8, {2 * H, in.width(8, 5 * H)},
                      in.layout(8, "[2H, 5H] (input-major)", "[2H, ceil(5H / 2)] (input-major, int4 two per byte)"))) ||
      (st = in.expect(10, {R, H, in.width(10, 4 * H)},
                      in.layout(10, "[R, H, 4H] (input-major)", "[R, H, 2H] (input-major, int4 two per byte)"))))
    return st;
  if (qle_qmode_integer(in.mode)) {
    const QleQMode m = in.mode;
    const bool i4 = m == QleQMode::I4;
    if ((st = in.expect(12, qle_scale_shape(m, block, {}, D, 3 * H),
                        i4 ? "[ceil(D / block_size), 3H]" : "[3H] (one scale per output channel)")) ||
        (st = in.expect(13, qle_scale_shape(m, block, {}, 2 * H, 5 * H),
                        i4 ? "[ceil(2H / block_size), 5H]" : "[5H] (one scale per output channel)")) ||
        (st = in.expect(14, qle_scale_shape(m, block, {R}, H, 4 * H),
                        i4 ? "[R, ceil(H / block_size), 4H]" : "[R, 4H] (one scale per output channel of each slice)")))
      return st;
  }
  return in.dynamic_limit({{"D", D}, {"2H", 2 * H}});
}

OrtStatusPtr qle_check_prlstm(const QleOpInputs& in, long block, bool seq, QlePrDims* dims) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 3 : 2, seq ? "[B, T, D]" : "[B, D]")) || (st = in.rank(1, 3, "[B, K, H]")) ||
      (st = in.rank(10, 3, "[R, H, 4H]")))
    return st;
  const std::vector<int64_t>& xs = in.shape[0];
  const int64_t B = xs[0], T = seq ? xs[1] : 1, D = xs.back(), K = in.shape[1][1], H = in.shape[1][2];
  const int64_t R = in.shape[10][0];
  if ((st = in.expect(1, {B, K, H}, "[B, K, H] (B from x)")) || (st = in.expect(2, {B, K, H}, "[B, K, H]")) ||
      (st = in.expect(3, {B, K, H}, "[B, K, H]")) || (st = in.expect(4, {B, K, H}, "[B, K, H]")) ||
      (st = in.expect(5, {B}, "[B]")) || (st = qle_check_pr_matrices(in, block, D, H, R)) ||
      (st = in.expect(7, {3 * H}, "[3H]")) || (st = in.expect(9, {5 * H}, "[5H]")) ||
      (st = in.expect(11, {R, 4 * H}, "[R, 4H]")))
    return st;
  if (K < 1 || K > kMaxStackLevels)
    return in.invalid("the stack depth K (block_h's second dimension) must be in [1, " +
                           std::to_string(kMaxStackLevels) + "], got " + std::to_string((long long)K));
  const int64_t* count = static_cast<const int64_t*>(in.data[5]);  // a host input
  for (int64_t r = 0; r < B; ++r)
    if (count[r] < 0 || count[r] > INT64_MAX - T)
      return in.invalid("input 'count' must hold token counts in [0, 2^63 - 1 - T]; row " +
                             std::to_string((long long)r) + " has " + std::to_string((long long)count[r]));
  *dims = QlePrDims{B, T, D, H, K, R};
  return nullptr;
}

QlePrOutputs qle_prlstm_outputs(Ort::KernelContext& ctx, const QlePrDims& d, bool seq) {
  const std::vector<int64_t> state = {d.B, d.K, d.H};
  const int64_t count_shape[1] = {d.B};
  QlePrOutputs o{};
  o.Y = qle_output(ctx, 0, seq ? std::vector<int64_t>{d.B, d.T, d.H} : std::vector<int64_t>{d.B, d.H});
  o.block_h = qle_output(ctx, 1, state);
  o.block_c = qle_output(ctx, 2, state);
  o.prefix_h = qle_output(ctx, 3, state);
  o.prefix_c = qle_output(ctx, 4, state);
  o.count = ctx.GetOutput(5, count_shape, 1).GetTensorMutableData<int64_t>();
  return o;
}

