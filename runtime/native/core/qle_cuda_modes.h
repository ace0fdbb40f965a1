// What every family's CUDA launchers share, without CUDA types (the op registrations compile with a
// plain C++ compiler): the weight modes and the text of a CUDA error.
#pragma once

// Weight modes (exporters/quantize.py): the element type of x / W_x / W_h and the arithmetic.
enum {
  QLE_CUDA_F32 = 0,        // float32 everything
  QLE_CUDA_F16 = 1,        // x, W float16; products rounded to float16, summed in float32
  QLE_CUDA_I8 = 2,         // W int8 [K, N], scale [N]
  QLE_CUDA_I8_DYNAMIC = 3, // W int8, activations quantized per row, exact int32 products
  QLE_CUDA_I4 = 4,         // W int4 (ONNX INT4 [K, N], files exported before the packed form),
                           // scale [ceil(K / block), N]
  QLE_CUDA_I4_PACKED = 5   // W uint8 [K, ceil(N / 2)] (int4 two per byte, low nibble first, q + 8),
                           // scale as QLE_CUDA_I4; a matrix's storage, never a node's mode
};

// The text of a cudaError_t value a launcher returned.
const char* qle_cuda_error_string(int error);
