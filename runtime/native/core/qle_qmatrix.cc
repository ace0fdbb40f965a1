// Quantized weight matrices (see qle_qmatrix.h): packing and the mode-dispatched product.
#include "qle_qmatrix.h"

#include <stdio.h>
#include <string.h>

#include <string>

namespace {

long round_up(long v, long m) { return (v + m - 1) / m * m; }

// Per-thread scratch (onnxruntime may run one kernel on several threads at once).
struct Scratch {
  std::vector<float> a, t, s;
  std::vector<int8_t> q;
};
thread_local Scratch t_scratch;

template <typename V>
typename V::value_type* grow(V& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

}  // namespace

const char* qle_qmode_name(QleQMode m) {
  switch (m) {
    case QleQMode::F32: return "fp32";
    case QleQMode::F16: return "fp16";
    case QleQMode::I8: return "int8";
    case QleQMode::I8Dyn: return "int8-dynamic";
    case QleQMode::I4: return "int4";
  }
  return "?";
}

bool qle_qmode_integer(QleQMode m) {
  return m == QleQMode::I8 || m == QleQMode::I8Dyn || m == QleQMode::I4;
}

ONNXTensorElementDataType qle_qmode_weight_type(QleQMode m) {
  switch (m) {
    case QleQMode::F32: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    case QleQMode::F16: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    case QleQMode::I8:
    case QleQMode::I8Dyn: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    case QleQMode::I4: return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  }
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

bool qle_qmode_accepts(QleQMode m, ONNXTensorElementDataType t) {
  return t == qle_qmode_weight_type(m) || (m == QleQMode::I4 && t == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT4);
}

const char* qle_qmode_weight_types(QleQMode m) {
  switch (m) {
    case QleQMode::F32: return "float32";
    case QleQMode::F16: return "float16";
    case QleQMode::I8:
    case QleQMode::I8Dyn: return "int8";
    case QleQMode::I4: return "uint8 (int4 packed two per byte) or int4";
  }
  return "?";
}

bool qle_qmatrix_packed(QleQMode m, ONNXTensorElementDataType t) {
  return m == QleQMode::I4 && t == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
}

int64_t qle_qmatrix_width(QleQMode m, ONNXTensorElementDataType t, int64_t N) {
  return qle_qmatrix_packed(m, t) ? N / 2 + N % 2 : N;
}

bool qle_read_string(const OrtApi& api, const OrtKernelInfo* info, const char* op, const char* name,
                     std::string* value, OrtStatusPtr* st) {
  *st = nullptr;
  size_t size = 0;
  if (OrtStatus* e = api.KernelInfoGetAttribute_string(info, name, nullptr, &size)) {
    api.ReleaseStatus(e);  // no string attribute of that name: none at all, or one of another type
    int64_t i = 0;
    float f = 0.0f;
    OrtStatus* as_int = api.KernelInfoGetAttribute_int64(info, name, &i);
    OrtStatus* as_float = as_int ? api.KernelInfoGetAttribute_float(info, name, &f) : nullptr;
    const bool other_type = as_int == nullptr || as_float == nullptr;
    if (as_int) api.ReleaseStatus(as_int);
    if (as_float) api.ReleaseStatus(as_float);
    if (other_type)
      *st = api.CreateStatus(ORT_INVALID_ARGUMENT,
                             (std::string(op) + ": attribute '" + name + "' must be a string").c_str());
    return false;
  }
  value->assign(size, '\0');
  if ((*st = api.KernelInfoGetAttribute_string(info, name, &(*value)[0], &size))) return false;
  value->resize(strlen(value->c_str()));
  return true;
}

OrtStatusPtr qle_read_qmode(const OrtApi& api, const OrtKernelInfo* info, const char* op, QleQMode* mode,
                            long* block) {
  *mode = QleQMode::F32;
  *block = 0;
  std::string value;
  OrtStatusPtr st = nullptr;
  if (!qle_read_string(api, info, op, "quant_mode", &value, &st)) return st;  // none: an unquantized node
  const QleQMode modes[] = {QleQMode::F16, QleQMode::I8, QleQMode::I8Dyn, QleQMode::I4};
  bool known = false;
  for (QleQMode m : modes)
    if (value == qle_qmode_name(m)) *mode = m, known = true;
  char msg[400];
  if (!known) {
    snprintf(msg, sizeof msg,
             "%s: unknown quant_mode '%s' (expected fp16, int8, int8-dynamic or int4; see "
             "exporters/quantize.py)",
             op, value.c_str());
    return api.CreateStatus(ORT_INVALID_ARGUMENT, msg);
  }
  int64_t bs = 0;
  if (OrtStatus* st = api.KernelInfoGetAttribute_int64(info, "block_size", &bs)) {
    api.ReleaseStatus(st);
    bs = 0;
  }
  if (*mode == QleQMode::I4 && bs < 1) {
    snprintf(msg, sizeof msg, "%s: quant_mode 'int4' needs a positive block_size attribute, got %lld",
             op, (long long)bs);
    return api.CreateStatus(ORT_INVALID_ARGUMENT, msg);
  }
  *block = (long)bs;
  return nullptr;
}

const char* qle_qmatrix_pack(QleQMode mode, long block, const void* data, ONNXTensorElementDataType type,
                             size_t offset, const float* scale, long K, long N, QleQMatrix* m) {
  m->mode = mode;
  m->K = K;
  m->N = N;
  const size_t n = (size_t)K * (size_t)N;
  switch (mode) {
    case QleQMode::F32:
      m->f = static_cast<const float*>(data) + offset;
      return nullptr;
    case QleQMode::F16:
      m->f_own.resize(n);
      qle_f16_to_f32((long)n, static_cast<const uint16_t*>(data) + offset, m->f_own.data());
      m->f = m->f_own.data();
      return nullptr;
    case QleQMode::I8:
      m->q = static_cast<const int8_t*>(data) + offset;
      m->scale = scale;
      m->block = K > 0 ? K : 1;
      return nullptr;
    case QleQMode::I4: {
      const uint8_t* bytes = static_cast<const uint8_t*>(data);
      m->q_own.resize(n);
      if (qle_qmatrix_packed(mode, type)) {
        // pack_int4: row r holds ceil(N / 2) bytes; column j is nibble j % 2 (low first) of byte
        // j / 2, stored as q + 8.
        const size_t width = (size_t)qle_qmatrix_width(mode, type, N);
        const uint8_t* rows = bytes + (N > 0 ? offset / (size_t)N : 0) * width;
        for (long k = 0; k < K; ++k) {
          const uint8_t* row = rows + (size_t)k * width;
          for (long j = 0; j < N; ++j) {
            const uint8_t b = row[j >> 1];
            m->q_own[(size_t)k * (size_t)N + (size_t)j] = (int8_t)(((j & 1) ? b >> 4 : b & 0x0F) - 8);
          }
        }
      } else {
        // ONNX INT4: element i of the row-major tensor is nibble i % 2 (low first) of byte i / 2,
        // two's complement (a slice may start on a high nibble).
        for (size_t i = 0; i < n; ++i) {
          const size_t e = offset + i;
          const uint8_t nib = (uint8_t)((e & 1) ? bytes[e >> 1] >> 4 : bytes[e >> 1] & 0x0F);
          m->q_own[i] = (int8_t)((int8_t)(nib << 4) >> 4);
        }
      }
      m->q = m->q_own.data();
      m->scale = scale;
      m->block = block < K ? block : (K > 0 ? K : 1);  // one block of K rows: the same scale rows
      return nullptr;
    }
    case QleQMode::I8Dyn: {
      const int8_t* w = static_cast<const int8_t*>(data) + offset;
      m->Kp = round_up(K, 4);
      m->Np = round_up(N, 16);
      m->q_own.assign((size_t)m->Kp * (size_t)m->Np, 0);
      m->colsum.assign((size_t)m->Np, 0);
      for (long k = 0; k < K; ++k) {
        for (long j = 0; j < N; ++j) {
          const int8_t v = w[k * N + j];
          if (v == -128)
            return "int8-dynamic weights must lie in [-127, 127] (symmetric int8); found -128";
          m->q_own[(size_t)(((k / 4) * m->Np + j) * 4 + k % 4)] = v;
          m->colsum[(size_t)j] += v;
        }
      }
      m->ws.assign((size_t)m->Np, 0.0f);
      memcpy(m->ws.data(), scale, sizeof(float) * (size_t)N);
      m->q = m->q_own.data();
      return nullptr;
    }
  }
  return "unknown mode";
}

void qle_qmatmul(const QleCpuKernels* k, const QleQMatrix& W, long M, const float* A, long lda,
                 const float* init, long ldinit, float* out, long ldo) {
  const long K = W.K, N = W.N;
  Scratch& s = t_scratch;
  switch (W.mode) {
    case QleQMode::F32:
      k->gemm(M, N, K, A, lda, W.f, N, init, ldinit, out, ldo);
      return;
    case QleQMode::F16: {
      float* a16 = grow(s.a, (size_t)(M * K));
      float* t = grow(s.t, (size_t)(M * N + N));
      float* zero = t + M * N;
      memset(zero, 0, sizeof(float) * (size_t)N);
      for (long r = 0; r < M; ++r) k->round_f16(K, A + r * lda, a16 + r * K);
      k->gemm(M, N, K, a16, K, W.f, N, zero, 0, t, N);
      k->round_f16(M * N, t, t);
      for (long r = 0; r < M; ++r) {
        const float* in = init + r * ldinit;
        const float* tr = t + r * N;
        float* o = out + r * ldo;
        for (long j = 0; j < N; ++j) o[j] = in[j] + tr[j];
      }
      return;
    }
    case QleQMode::I8:
    case QleQMode::I4:
      k->gemm_w8(M, N, K, A, lda, W.q, W.scale, W.block, init, ldinit, out, ldo);
      return;
    case QleQMode::I8Dyn: {
      int8_t* q = grow(s.q, (size_t)(M * W.Kp));
      float* xs = grow(s.s, (size_t)M);
      k->quant_rows(M, K, A, lda, q, W.Kp, xs);
      k->gemm_i8(M, N, W.Kp, q, W.Kp, xs, W.q, W.Np, W.colsum.data(), W.ws.data(), init, ldinit,
                 out, ldo);
      return;
    }
  }
}

void qle_f16_to_f32(long n, const uint16_t* in, float* out) {
  for (long i = 0; i < n; ++i) out[i] = qle_f16_bits_to_f32(in[i]);
}
