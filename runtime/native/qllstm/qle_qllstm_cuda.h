// Host-side launchers of the CUDA kernels (qle_cuda.cu). No CUDA types here, so the op
// registration compiles with a plain C++ compiler. Pointers are device pointers; `stream` is
// the node's cudaStream_t. Each returns 0 or a cudaError_t value.
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

struct QleCudaWeights {
  int mode;             // the node's
  long block;           // int4 block size (unused otherwise)
  const void* W_x;      // [D, H]
  const void* W_h;      // [H, H]
  const float* W_x_scale;  // int modes only
  const float* W_h_scale;
  int W_x_mode, W_h_mode;  // how each matrix is stored: `mode`, or QLE_CUDA_I4_PACKED
};

// x is float32, or float16 in QLE_CUDA_F16.
int qle_cuda_cell(void* stream, const QleCudaWeights* w, long B, long D, long H, const void* x,
                  const float* h, const float* c, const float* bias, const float* gate_scale,
                  const float* gate_bias, const float* alpha, float* h_out, float* c_out);

int qle_cuda_sequence(void* stream, const QleCudaWeights* w, long B, long T, long D, long H,
                      const void* x, const float* h0, const float* c0, const float* bias,
                      const float* gate_scale, const float* gate_bias, const float* alpha,
                      float* Y, float* h_out, float* c_out);

const char* qle_cuda_error_string(int error);
