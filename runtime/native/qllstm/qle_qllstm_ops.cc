// QL-LSTM ops (qle_qllstm_ops.h): their specs and shape checks, and their CPU ops (weight packing,
// argument filling, threading), registered with the library's domain by a static registrar
// (qle_registry.h). The kernels are in qle_qllstm.cc. Constant weights (initializers) are packed once
// per kernel, others on every call.
#include "qle_qllstm_ops.h"

#include <string.h>

#include <memory>
#include <string>

#include "qle_cpu_ops.h"
#include "qle_qllstm.h"
#include "qle_registry.h"
#include "qle_shape.h"

namespace {

constexpr long kRowGroup = 4;     // batch rows that share one pass over the weights
constexpr long kProjChunk = 64;   // rows of the sequence input projection per task

using Inputs = QleOpInputs;

// Fn over [0, total) in parts of `step` rows: on onnxruntime's intra-op pool when there is more than
// one part and at least kQleParallelWork of work; otherwise on this thread, in one call (`whole`) or
// part by part.
template <void (*Fn)(const QleCpuKernels*, const QleQllstmArgs&, long, long)>
struct Parts {
  const QleCpuKernels* k;
  const QleQllstmArgs* a;
  long total, step;
  static void task(void* p, size_t i) {
    const Parts& r = *static_cast<const Parts*>(p);
    const long lo = (long)i * r.step;
    Fn(r.k, *r.a, lo, lo + r.step < r.total ? lo + r.step : r.total);
  }
  void run(Ort::KernelContext& ctx, int64_t work, bool whole) {
    const long parts = (total + step - 1) / step;
    if (parts > 1 && work >= kQleParallelWork)
      ctx.ParallelFor(task, (size_t)parts, 0, this);
    else if (whole)
      Fn(k, *a, 0, total);
    else
      for (long i = 0; i < parts; ++i) task(this, (size_t)i);
  }
};

const char* pack(const Inputs& in, long block, int64_t D, int64_t H, QleQllstmWeights* w) {
  return qle_qllstm_pack(in.mode, block, in.data[3], in.type[3], in.data[4], in.type[4], in.scale(9), in.scale(10),
                         (long)D, (long)H, w);
}

using Packed = QlePacked<QleQllstmWeights>;

OrtStatusPtr run(Ort::KernelContext& ctx, const QleCpuKernels* k, const Inputs& in, const Packed& pk) {
  const bool seq = in.op.sequence;
  QleQllstmDims d;
  if (OrtStatusPtr st = qle_check_qllstm(in, pk.block, seq, &d)) return st;
  QleQllstmWeights local;
  const QleQllstmWeights* w = nullptr;
  if (OrtStatusPtr st = pk.get(in, &local, [&](QleQllstmWeights* l) { return pack(in, pk.block, d.D, d.H, l); }, &w))
    return st;
  const QleQllstmOutputs o = qle_qllstm_outputs(ctx, d, seq);
  const long B = (long)d.B, T = (long)d.T, D = (long)d.D, H = (long)d.H;
  if (B == 0) return nullptr;
  if (T == 0) {
    memcpy(o.h, in.f(1), sizeof(float) * B * H);
    memcpy(o.c, in.f(2), sizeof(float) * B * H);
    return nullptr;
  }
  std::vector<float> xbuf;
  const float* x = in.f(0);
  if (in.mode == QleQMode::F16) {  // x float16: its values as float32
    xbuf.resize((size_t)(B * T * D));
    qle_f16_to_f32(B * T * D, static_cast<const uint16_t*>(in.data[0]), xbuf.data());
    x = xbuf.data();
  }
  const QleQllstmArgs a{B, T, D, H, w, x, in.f(1), in.f(2), in.f(5), in.f(6), in.f(7), *in.f(8), o.Y, o.h, o.c};
  if (!seq) {
    Parts<qle_qllstm_cell_rows>{k, &a, B, kRowGroup}.run(ctx, qle_mul_sat(qle_mul_sat(B, D + H), H), true);
    return nullptr;
  }
  Parts<qle_qllstm_project_rows>{k, &a, B * T, kProjChunk}.run(ctx, qle_mul_sat(qle_mul_sat(B * T, D), H), true);
  Parts<qle_qllstm_recur_rows>{k, &a, B, kRowGroup}.run(
      ctx, qle_mul_sat(qle_mul_sat(qle_mul_sat(T, H), H), kRowGroup), false);
  return nullptr;
}

// Packs constant W_x, W_h (and their scales) of the contract's shapes; fp32 weights need no packing
// (the kernels read them in place).
void prepack(const Inputs& in, Packed* pk) {
  if (in.shape[3].size() != 2 || in.shape[4].size() != 2) return;
  const int64_t D = in.shape[3][0], H = in.shape[4][0];
  if (!qle_check_passed(qle_check_qllstm_weights(in, pk->block, D, H))) return;
  std::unique_ptr<QleQllstmWeights> w(new QleQllstmWeights);
  if (const char* e = pack(in, pk->block, D, H, w.get()))
    pk->error = e;
  else
    pk->w = std::move(w);
}

void append_ops(std::vector<QleRegisteredOp>* out) {
  qle_append_ops<QleCpuOp<QleQllstmWeights, run, prepack>>({&qle_qllstm_spec(false), &qle_qllstm_spec(true)}, out);
}

const QleOpRegistrar kRegistrar(append_ops);

}  // namespace

const QleOpSpec& qle_qllstm_spec(bool seq) {
  static const std::vector<const char*> cell_inputs = {"x",         "h",     "c",         "W_x",      "W_h",
                                                       "bias",      "gate_scale", "gate_bias", "alpha",
                                                       "W_x_scale", "W_h_scale"};
  static const std::vector<const char*> seq_inputs = {"x",         "h0",    "c0",        "W_x",      "W_h",
                                                      "bias",      "gate_scale", "gate_bias", "alpha",
                                                      "W_x_scale", "W_h_scale"};
  static const std::vector<ONNXTensorElementDataType> types(9, kQleF32);
  static const QleOpSpec cell{"QLLSTMCell", false, cell_inputs, types, {kQleF32, kQleF32}, {3, 4}, true, {}};
  static const QleOpSpec sequence{"QLLSTMSequence", true, seq_inputs, types, {kQleF32, kQleF32, kQleF32}, {3, 4},
                                  true, {}};
  return seq ? sequence : cell;
}

namespace {

// D and H within their bounds: checked in place, the messages (qle_size_error) built only when one fails.
OrtStatusPtr qllstm_sizes(const QleOpInputs& in, int64_t D, int64_t H) {
  if (qle_size_ok(D, 1, kQleMaxWidth) && qle_size_ok(H, 1, kQleMaxWidth)) return nullptr;
  return in.sizes({qle_size_error("the input size D", "x's last dimension", D, 1, kQleMaxWidth),
                   qle_size_error("the hidden size H", "h's second dimension", H, 1, kQleMaxWidth)});
}

}  // namespace

OrtStatusPtr qle_check_qllstm_weights(const QleOpInputs& in, long block, int64_t D, int64_t H) {
  OrtStatusPtr st = nullptr;
  if ((st = qllstm_sizes(in, D, H)) ||
      (st = in.expect(3, {D, in.width(3, H)},
                      in.layout(3, "[D, H] (input-major)", "[D, ceil(H / 2)] (input-major, int4 two per byte)"))) ||
      (st = in.expect(4, {H, in.width(4, H)},
                      in.layout(4, "[H, H] (input-major)", "[H, ceil(H / 2)] (input-major, int4 two per byte)"))))
    return st;
  if (qle_qmode_integer(in.mode)) {
    // qle_scale_shape's shapes, written out (no vectors built): int4 [ceil(K / block), H], else [H].
    if (in.mode == QleQMode::I4) {
      if ((st = in.expect(9, {qle_ceil_div(D, block), H}, "[ceil(D / block_size), H]")) ||
          (st = in.expect(10, {qle_ceil_div(H, block), H}, "[ceil(H / block_size), H]")))
        return st;
    } else if ((st = in.expect(9, {H}, "[H] (one scale per output channel)")) ||
               (st = in.expect(10, {H}, "[H] (one scale per output channel)"))) {
      return st;
    }
  }
  return in.dynamic_limit({{"D", D}, {"H", H}});
}

OrtStatusPtr qle_check_qllstm(const QleOpInputs& in, long block, bool seq, QleQllstmDims* dims) {
  OrtStatusPtr st = nullptr;
  if ((st = in.rank(0, seq ? 3 : 2, seq ? "[B, T, D]" : "[B, D]")) || (st = in.rank(1, 2, "[B, H]"))) return st;
  const std::vector<int64_t>& xs = in.shape[0];
  const int64_t B = xs[0], T = seq ? xs[1] : 1, D = xs.back(), H = in.shape[1][1];
  if ((st = qllstm_sizes(in, D, H)) || (st = in.expect(1, {B, H}, "[B, H] (B from x)")) ||
      (st = in.expect(2, {B, H}, "[B, H]")) ||
      (st = qle_check_qllstm_weights(in, block, D, H)) || (st = in.expect(5, {H}, "[H]")) ||
      (st = in.expect(6, {4, H}, "[4, H]")) || (st = in.expect(7, {4, H}, "[4, H]")) ||
      (st = in.expect(8, {}, "[] (0-d scalar)")))
    return st;
  *dims = QleQllstmDims{B, T, D, H};
  return nullptr;
}

QleQllstmOutputs qle_qllstm_outputs(Ort::KernelContext& ctx, const QleQllstmDims& d, bool seq) {
  QleQllstmOutputs o{};
  size_t i = 0;
  o.Y = seq ? qle_output(ctx, i++, {d.B, d.T, d.H}) : nullptr;
  o.h = qle_output(ctx, i++, {d.B, d.H});
  o.c = qle_output(ctx, i++, {d.B, d.H});
  return o;
}
