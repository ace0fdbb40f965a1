// Quantized weight matrices of the CPU kernels (exporters/quantize.py, custom-op contract version 1),
// shared by every op of the library:
//   fp32          W float32 [K, N]
//   fp16          W float16 [K, N]; the product rounds its input and its result to float16
//   int8          W int8 [K, N], scale float32 [N] (weight-only: float32 products)
//   int8-dynamic  as int8; the activation is quantized per row on the fly, exact int32 products
//   int4          W uint8 [K, ceil(N / 2)] (pack_int4: two per byte, low nibble first, q + 8) or, in files
//                 exported before that form, ONNX INT4 [K, N]; scale float32 [ceil(K / block), N]
// A stacked matrix input [..., K, N] is packed slice by slice (qle_qmatrix_pack's `offset`).
#pragma once

#include <onnxruntime_c_api.h>
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "qle_cpu.h"

enum class QleQMode { F32, F16, I8, I8Dyn, I4 };

// "fp32", "fp16", "int8", "int8-dynamic", "int4".
const char* qle_qmode_name(QleQMode m);
// int8, int8-dynamic, int4: the modes whose nodes have scale inputs appended.
bool qle_qmode_integer(QleQMode m);
// int8-dynamic: |sum of K products| <= K * 255 * 127 must fit int32 (the VNNI form adds 128).
constexpr long kQleMaxDynamicK = 65536;

// The node's string attribute `name` into *value: true when it has one. Fails when the node has an attribute of
// that name of another type (naming `op`).
bool qle_read_string(const OrtApi& api, const OrtKernelInfo* info, const char* op, const char* name,
                     std::string* value, OrtStatusPtr* st);

// Reads the node's quant_mode / block_size attributes (no quant_mode: fp32, block 0). Fails, naming
// `op`, for an unknown quant_mode and for int4 without a positive block_size.
OrtStatusPtr qle_read_qmode(const OrtApi& api, const OrtKernelInfo* info, const char* op, QleQMode* mode,
                            long* block);

// Element type of a matrix input in mode m (int4: the packed uint8 form).
ONNXTensorElementDataType qle_qmode_weight_type(QleQMode m);
// Whether mode m reads a matrix input of element type t: its weight type, and in int4 also ONNX INT4.
bool qle_qmode_accepts(QleQMode m, ONNXTensorElementDataType t);
// The element types mode m reads, in words (error messages).
const char* qle_qmode_weight_types(QleQMode m);
// Whether a matrix input of element type t is int4 packed two per byte (uint8 [..., K, ceil(N / 2)]).
bool qle_qmatrix_packed(QleQMode m, ONNXTensorElementDataType t);
// Last dimension of a matrix input of element type t with N >= 0 columns: ceil(N / 2) packed, else N.
int64_t qle_qmatrix_width(QleQMode m, ONNXTensorElementDataType t, int64_t N);

// One matrix W [K, N] as the kernels read it.
struct QleQMatrix {
  QleQMode mode = QleQMode::F32;
  long K = 0, N = 0;
  const float* f = nullptr;        // fp32: the input; fp16: converted copy
  const int8_t* q = nullptr;       // int8: the input; int4: unpacked copy ([K, N]); int8-dynamic: packed
  const float* scale = nullptr;    // int8 / int4: the scale input
  long block = 1;                  // int8: K (one block); int4: block_size, at most K
  long Kp = 0, Np = 0;             // int8-dynamic packing
  std::vector<float> f_own;
  std::vector<int8_t> q_own;
  std::vector<int32_t> colsum;
  std::vector<float> ws;           // int8-dynamic: scale padded to Np
};

// Prepares W (the [K, N] slice starting at element `offset`, a multiple of N, of the [..., K, N]
// matrices the raw tensor `data` of element type `type` holds; a packed int4 slice starts at byte
// offset / N * ceil(N / 2)) and its scale (the slice's own: [N], or [ceil(K / block), N] for int4;
// unused in fp32 and fp16) for qle_qmatmul. Returns an error message or nullptr. Inputs the kernels
// can read as they are (fp32, int8 and the scales) are referenced, not copied: they must outlive
// the matrix.
const char* qle_qmatrix_pack(QleQMode mode, long block, const void* data, ONNXTensorElementDataType type,
                             size_t offset, const float* scale, long K, long N, QleQMatrix* m);

// out[r, :] = init[r, :] + A[r, :] @ W for r < M, with W's mode arithmetic (the function bodies'):
//   fp32: float32 products; fp16: A and the product rounded to float16, summed in float32;
//   int8 / int4: float32 products with the int8 weights and the (block) scales;
//   int8-dynamic: A quantized per row, exact int32 products, (acc * s_row) * s_col.
// Strides in floats; init may alias out (ldinit == 0 broadcasts one row); A must not overlap out.
// Thread-safe (per-thread scratch).
void qle_qmatmul(const QleCpuKernels* k, const QleQMatrix& W, long M, const float* A, long lda,
                 const float* init, long ldinit, float* out, long ldo);

// out[i] = float16 bits in[i] as float32, i < n.
void qle_f16_to_f32(long n, const uint16_t* in, float* out);
