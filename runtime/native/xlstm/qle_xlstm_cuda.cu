// CUDA kernels of the sLSTM and mLSTM custom ops (launchers in qle_xlstm_cuda.h), every mode their
// nodes can have. The maths is the CPU kernels' (qle_xlstm.h): per-unit gate maths from the same
// source (qle_xlstm_math.h, float instantiation), the sLSTM's recurrent product through dot()
// (qle_cuda_common.cuh). Build with --fmad=false: the shared gate maths must not be contracted into
// fused multiply-adds (the CPU build has -ffp-contract=off), or results drift from the CPU kernels'.
//
// The recurrences are sequential per stream, so one thread block runs one stream from the first
// token to the last: a batch row (sLSTM) or a (batch row, head) pair (mLSTM). Threads split the
// units, and __syncthreads() separates every step whose inputs another thread wrote.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "qle_cuda_common.cuh"
#include "qle_xlstm_cuda.h"
#include "qle_xlstm_math.h"

namespace {

// ---------------------------------------------------------------------------------------------
// sLSTM (qle_xlstm.h): one block per batch row.

struct SDev {
  long T, NH, DH;
  const float* x;
  const float *y, *c, *n, *m;
  Mat R;  // the whole stack [4, NH, DH, DH]: slice g * NH + h
  const float* b;
  float* Y;
  float *y_out, *c_out, *n_out, *m_out;
  float* scratch;  // [B, 4H]: y_h @ R[g, h], gate-major
};

__global__ void __launch_bounds__(kThreads) slstm_kernel(SDev a) {
  const long r = blockIdx.x, DH = a.DH, H = a.NH * DH;
  const float *y = a.y + r * H, *c = a.c + r * H, *n = a.n + r * H, *m = a.m + r * H;
  float *y_out = a.y_out + r * H, *c_out = a.c_out + r * H, *n_out = a.n_out + r * H,
        *m_out = a.m_out + r * H;
  float* ry = a.scratch + r * 4 * H;
  if (a.T == 0) {
    for (long j = threadIdx.x; j < H; j += blockDim.x) {
      y_out[j] = y[j];
      c_out[j] = c[j];
      n_out[j] = n[j];
      m_out[j] = m[j];
    }
    return;
  }
  for (long t = 0; t < a.T; ++t) {
    for (long u = threadIdx.x; u < 4 * H; u += blockDim.x) {
      const long g = u / H, j = u % H, h = j / DH;
      ry[u] = dot(slice(a.R, g * a.NH + h, DH, DH), y + h * DH, DH, j % DH, DH);
    }
    __syncthreads();
    const float* x = a.x + (r * a.T + t) * 4 * H;
    for (long j = threadIdx.x; j < H; j += blockDim.x) {
      qle_fm_slstm(qle_fm_slstm_pre(x[j], ry[j], a.b[j]),
                   qle_fm_slstm_pre(x[H + j], ry[H + j], a.b[H + j]),
                   qle_fm_slstm_pre(x[2 * H + j], ry[2 * H + j], a.b[2 * H + j]),
                   qle_fm_slstm_pre(x[3 * H + j], ry[3 * H + j], a.b[3 * H + j]), c[j], n[j], m[j],
                   &y_out[j], &c_out[j], &n_out[j], &m_out[j]);
      if (a.Y != nullptr) a.Y[(r * a.T + t) * H + j] = y_out[j];
    }
    __syncthreads();
    y = y_out, c = c_out, n = n_out, m = m_out;
  }
}

// ---------------------------------------------------------------------------------------------
// mLSTM (qle_xlstm.h): one block per (batch row, head); threads over DK (n) and DV (C's columns,
// h). Sums run in the CPU kernel's order (over d, sequentially).

__global__ void __launch_bounds__(kThreads) mlstm_kernel(QleMlstmArgs a) {
  const long s = blockIdx.x, r = s / a.NH, h = s % a.NH, DK = a.DK, DV = a.DV;
  const float* C = a.C + s * DK * DV;
  const float* n = a.n + s * DK;
  float m = a.m[s];
  float* C_out = a.C_out + s * DK * DV;
  float* n_out = a.n_out + s * DK;
  if (a.T == 0) {
    for (long i = threadIdx.x; i < DK * DV; i += blockDim.x) C_out[i] = C[i];
    for (long d = threadIdx.x; d < DK; d += blockDim.x) n_out[d] = n[d];
  }
  for (long t = 0; t < a.T; ++t) {
    const long g = (r * a.T + t) * a.NH + h;  // index into [B, T, NH]
    const float* q = a.q + g * DK;
    const float* k = a.k + g * DK;
    const float* v = a.v + g * DV;
    float f_act, i_act, m_new;
    qle_fm_mlstm_gates(a.i[g], a.f[g], m, &f_act, &i_act, &m_new);
    for (long d = threadIdx.x; d < DK; d += blockDim.x)
      n_out[d] = f_act * n[d] + i_act * (k[d] * a.k_scale);
    float* hv = a.Hout + g * DV;
    for (long j = threadIdx.x; j < DV; j += blockDim.x) {  // C' = f~ C + ik v^T; h_num = q~ C'
      float h_num = 0.0f;
      for (long d = 0; d < DK; ++d) {
        const float cj = f_act * C[d * DV + j] + (i_act * (k[d] * a.k_scale)) * v[j];
        C_out[d * DV + j] = cj;
        h_num += (q[d] * a.q_scale) * cj;
      }
      hv[j] = h_num;
    }
    __syncthreads();
    float qn = 0.0f;
    for (long d = 0; d < DK; ++d) qn += (q[d] * a.q_scale) * n_out[d];
    const float denom = qle_fm_mlstm_denom(qn, m_new, a.eps);
    for (long j = threadIdx.x; j < DV; j += blockDim.x) hv[j] = hv[j] / denom;
    __syncthreads();  // the next step rewrites n_out, read above by every thread
    C = C_out, n = n_out, m = m_new;
  }
  if (threadIdx.x == 0) a.m_out[s] = m;
}
}  // namespace

int qle_cuda_slstm(void* stream, const QleCudaSlstm* p) {
  const long H = p->NH * p->DH;
  if (p->B == 0 || H == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  StreamBuffer scratch{s};
  if (const cudaError_t e = scratch.alloc((size_t)(p->B * 4 * H))) return (int)e;
  const SDev a{p->T,     p->NH,    p->DH,   p->x,
               p->y,     p->c,     p->n,    p->m,
               Mat{p->mode, p->block, p->R, p->R_scale},
               p->b,     p->Y,     p->y_out, p->c_out,
               p->n_out, p->m_out, scratch.p};
  slstm_kernel<<<(unsigned)p->B, kThreads, 0, s>>>(a);
  return (int)scratch.release(cudaGetLastError());
}

int qle_cuda_mlstm(void* stream, const QleMlstmArgs* p) {
  if (p->B == 0 || p->NH == 0) return 0;
  mlstm_kernel<<<(unsigned)(p->B * p->NH), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(*p);
  return (int)cudaGetLastError();
}
