// Cache blocking of the multi-row fp32 product, shared by the vectorised gemm paths
// (qle_cpu_avx2.cc, qle_cpu_avx512.cc). Below kQlePackRows rows the row tiles read W in place (it
// is L2 resident for the model shapes; the copy would cost more than the strided reads it saves).
// From kQlePackRows rows on, W is cut into kQleBlockK x kQleBlockN blocks, each copied once per call
// into a contiguous per-thread scratch buffer (row stride kQleBlockN, 256 KiB, stays in L2; no
// strided or 4 KiB-aliasing reads for wide W), and chunks of kQleRowChunk rows (their A slice stays
// in L2) pass over it in turn. Later K blocks accumulate into out, so every output element still
// sees init + A[r, 0] * W[0, n] + ... in k order, exactly as without blocking.
#pragma once

#include <string.h>

#include <vector>

constexpr long kQleRowChunk = 256, kQlePackRows = 128, kQleBlockK = 256, kQleBlockN = 256;

typedef void (*qle_gemm_block_fn)(long M, long N, long K, const float* A, long lda, const float* W, long ldw,
                                  const float* init, long ldinit, float* out, long ldo);

// out = init + A @ W (the qle_gemm_fn contract) for M >= 2 rows, Block running the row tiles.
template <qle_gemm_block_fn Block>
void qle_gemm_blocked(long M, long N, long K, const float* A, long lda, const float* W, long ldw,
                      const float* init, long ldinit, float* out, long ldo) {
  if (M < kQlePackRows) {
    Block(M, N, K, A, lda, W, ldw, init, ldinit, out, ldo);
    return;
  }
  static thread_local std::vector<float> scratch((size_t)(kQleBlockK * kQleBlockN));
  float* wp = scratch.data();
  for (long j0 = 0; j0 < N; j0 += kQleBlockN) {
    const long nc = N - j0 < kQleBlockN ? N - j0 : kQleBlockN;
    for (long k0 = 0; k0 < K; k0 += kQleBlockK) {
      const long kc = K - k0 < kQleBlockK ? K - k0 : kQleBlockK;
      for (long k = 0; k < kc; ++k) memcpy(wp + k * nc, W + (k0 + k) * ldw + j0, (size_t)nc * sizeof(float));
      const float* ini = k0 == 0 ? init + j0 : out + j0;
      const long ldi = k0 == 0 ? ldinit : ldo;
      for (long r0 = 0; r0 < M; r0 += kQleRowChunk) {
        const long m = M - r0 < kQleRowChunk ? M - r0 : kQleRowChunk;
        Block(m, nc, kc, A + r0 * lda + k0, lda, wp, nc, ini + r0 * ldi, ldi, out + r0 * ldo + j0, ldo);
      }
    }
  }
}
