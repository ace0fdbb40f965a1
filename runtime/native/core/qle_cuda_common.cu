// Host-side helpers of every family's CUDA launchers (qle_cuda_modes.h).
#include <cuda_runtime.h>

#include "qle_cuda_modes.h"

const char* qle_cuda_error_string(int error) { return cudaGetErrorString(static_cast<cudaError_t>(error)); }
