// Scalar reference kernels (every vectorised path is tested against these) and run-time ISA
// selection.
#include <math.h>
#include <string.h>

#include "qle_cpu.h"

static void gemm_scalar(long M, long N, long K, const float* A, long lda, const float* W,
                        long ldw, const float* init, long ldinit, float* out, long ldo) {
  for (long r = 0; r < M; ++r) {
    const float* a = A + r * lda;
    const float* in = init + r * ldinit;
    float* o = out + r * ldo;
    if (o != in) memcpy(o, in, sizeof(float) * N);
    for (long k = 0; k < K; ++k) {
      const float ak = a[k];
      const float* w = W + k * ldw;
      for (long j = 0; j < N; ++j) o[j] += ak * w[j];
    }
  }
}

static void gemm_w8_scalar(long M, long N, long K, const float* A, long lda, const int8_t* W,
                           const float* scale, long block, const float* init, long ldinit,
                           float* out, long ldo) {
  for (long r = 0; r < M; ++r) {
    const float* a = A + r * lda;
    for (long n = 0; n < N; ++n) {
      float acc = init[r * ldinit + n];
      for (long k0 = 0, b = 0; k0 < K; k0 += block, ++b) {
        const long k1 = k0 + block < K ? k0 + block : K;
        float part = 0.0f;
        for (long k = k0; k < k1; ++k) part += a[k] * (float)W[k * N + n];
        acc += scale[b * N + n] * part;
      }
      out[r * ldo + n] = acc;
    }
  }
}

static void gemm_i8_scalar(long M, long N, long Kp, const int8_t* Aq, long lda, const float* xs,
                           const int8_t* Wp, long Np, const int32_t*, const float* ws,
                           const float* init, long ldinit, float* out, long ldo) {
  for (long r = 0; r < M; ++r) {
    const int8_t* a = Aq + r * lda;
    for (long n = 0; n < N; ++n) {
      int32_t acc = 0;
      for (long g = 0; g < Kp / 4; ++g) {
        const int8_t* w = Wp + (g * Np + n) * 4;
        for (long j = 0; j < 4; ++j) acc += (int32_t)a[4 * g + j] * (int32_t)w[j];
      }
      const float y = ((float)acc * xs[r]) * ws[n];
      out[r * ldo + n] = init[r * ldinit + n] + y;
    }
  }
}

static void quant_rows_scalar(long M, long K, const float* x, long ldx, int8_t* q, long ldq,
                              float* xs) {
  for (long r = 0; r < M; ++r) {
    const float* xr = x + r * ldx;
    int8_t* qr = q + r * ldq;
    float amax = 0.0f;
    for (long k = 0; k < K; ++k) amax = fmaxf(amax, fabsf(xr[k]));
    float s = amax / 127.0f;
    s = s > 1e-30f ? s : 1e-30f;
    for (long k = 0; k < K; ++k) {
      float v = nearbyintf(xr[k] / s);  // default rounding mode: half to even
      v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
      qr[k] = (int8_t)v;
    }
    memset(qr + K, 0, (size_t)(ldq - K));
    xs[r] = s;
  }
}

float qle_round_f16_scalar(float x) { return (float)(qle_f16)x; }

float qle_f16_bits_to_f32(uint16_t h) {
  qle_f16 v;
  memcpy(&v, &h, sizeof v);
  return (float)v;
}

static void round_f16_scalar(long n, const float* in, float* out) {
  for (long i = 0; i < n; ++i) out[i] = qle_round_f16_scalar(in[i]);
}

const QleCpuKernels qle_kernels_scalar = {"scalar",          gemm_scalar,      gemm_w8_scalar,
                                          gemm_i8_scalar,    quant_rows_scalar, round_f16_scalar};

#if defined(QLE_X86)
const char* const qle_isa_names[QLE_ISA_COUNT] = {"scalar", "avx2", "avxvnni", "avx512", "avx512vnni"};
#define QLE_ISA_LIST "scalar, avx2, avxvnni, avx512, avx512vnni"

static bool has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}
static bool has_avx512() {
  return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}

static bool cpu_supports(const char* isa) {
  if (strcmp(isa, "scalar") == 0) return true;
  if (strcmp(isa, "avx2") == 0) return has_avx2();
  if (strcmp(isa, "avxvnni") == 0) return has_avx2() && __builtin_cpu_supports("avxvnni");
  if (strcmp(isa, "avx512") == 0) return has_avx512();
  if (strcmp(isa, "avx512vnni") == 0) return has_avx512() && __builtin_cpu_supports("avx512vnni");
  return false;
}

static const QleCpuKernels* const kTables[QLE_ISA_COUNT] = {
    &qle_kernels_scalar, &qle_kernels_avx2, &qle_kernels_avxvnni, &qle_kernels_avx512,
    &qle_kernels_avx512vnni};
#elif defined(QLE_ARM64)
#include <sys/auxv.h>

const char* const qle_isa_names[QLE_ISA_COUNT] = {"scalar", "neon", "neon-dotprod"};
#define QLE_ISA_LIST "scalar, neon, neon-dotprod"

// The kernel's HWCAP bits (ASIMD: NEON, ASIMDDP: sdot/udot), not /proc/cpuinfo.
static bool cpu_supports(const char* isa) {
  const unsigned long hw = getauxval(AT_HWCAP);
  if (strcmp(isa, "scalar") == 0) return true;
  if (strcmp(isa, "neon") == 0) return (hw & HWCAP_ASIMD) != 0;
  if (strcmp(isa, "neon-dotprod") == 0) return (hw & HWCAP_ASIMD) != 0 && (hw & HWCAP_ASIMDDP) != 0;
  return false;
}

static const QleCpuKernels* const kTables[QLE_ISA_COUNT] = {&qle_kernels_scalar, &qle_kernels_neon,
                                                            &qle_kernels_neon_dotprod};
#else
const char* const qle_isa_names[QLE_ISA_COUNT] = {"scalar"};
#define QLE_ISA_LIST "scalar"

static bool cpu_supports(const char* isa) { return strcmp(isa, "scalar") == 0; }
static const QleCpuKernels* const kTables[QLE_ISA_COUNT] = {&qle_kernels_scalar};
#endif

bool qle_cpu_supports(const char* isa) { return cpu_supports(isa); }

const QleCpuKernels* qle_select_isa(const char* isa, const char** error) {
  *error = nullptr;
  if (isa == nullptr || isa[0] == '\0' || strcmp(isa, "auto") == 0) {
    for (int i = QLE_ISA_COUNT - 1; i > 0; --i)
      if (cpu_supports(qle_isa_names[i])) return kTables[i];
    return &qle_kernels_scalar;
  }
  for (int i = 0; i < QLE_ISA_COUNT; ++i) {
    if (strcmp(isa, qle_isa_names[i]) != 0) continue;
    if (cpu_supports(isa)) return kTables[i];
    *error = "this CPU does not support that instruction set";
    return nullptr;
  }
  *error = "unknown ISA name (this " QLE_ARCH " library has " QLE_ISA_LIST " or auto)";
  return nullptr;
}
