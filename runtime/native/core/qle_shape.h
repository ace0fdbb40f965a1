// Overflow-safe size arithmetic and the size bounds of the ops' input checks (qle_contract.h and each
// family's qle_check_*). Every size comes from a file or an input: a product or ceiling of sizes goes
// through these, and every size that shapes the work or the packed weights is bounded, so a zero-size
// dimension cannot make the others free (an empty R [4, NH, 0, 0] with a huge NH would otherwise size
// gigabytes of packing). The bounds are far above any real model:
//   widths (D, H, DH, DK, DV; the sLSTM's H = NH * DH)   1 .. 2^24
//   head counts NH                                      1 .. 4096
//   PR-LSTM unary refinements R                         0 .. 1024
// Batch B and chunk length T may be 0; with the widths at least 1 they size real input data.
#pragma once

#include <stdint.h>

#include <string>

constexpr int64_t kQleMaxWidth = int64_t(1) << 24;
constexpr int64_t kQleMaxHeads = 4096;
constexpr int64_t kQleMaxRefinements = 1024;

// ceil(K / block) for K >= 0 and block >= 1, without the overflow of (K + block - 1) / block.
inline int64_t qle_ceil_div(int64_t K, int64_t block) { return K / block + (K % block != 0 ? 1 : 0); }

// a * b for a, b >= 0, INT64_MAX when it overflows (work estimates).
inline int64_t qle_mul_sat(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

inline bool qle_size_ok(int64_t value, int64_t lo, int64_t hi) { return value >= lo && value <= hi; }

// Empty when lo <= value <= hi; else "<what> (<from>) must be in [lo, hi], got <value>".
inline std::string qle_size_error(const char* what, const char* from, int64_t value, int64_t lo, int64_t hi) {
  if (qle_size_ok(value, lo, hi)) return std::string();
  return std::string(what) + " (" + from + ") must be in [" + std::to_string((long long)lo) + ", " +
         std::to_string((long long)hi) + "], got " + std::to_string((long long)value);
}
