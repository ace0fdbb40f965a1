// How a family's ops join the library's domain: its ops file holds one static registrar,
//   const QleOpRegistrar kRegistrar(append_ops);
// where append_ops appends its ops (qle_append_ops). The CPU ops files register the CPU ops; the CUDA
// ops files (*_cuda_ops.cc, compiled only into the CUDA library) register theirs the same way.
// RegisterCustomOps and qle_native_info (qle_register.cc) read the registered ops; no list of families
// is kept anywhere.
#pragma once

#include <initializer_list>
#include <vector>

struct OrtCustomOp;
struct QleOpSpec;

struct QleRegisteredOp {
  const OrtCustomOp* op;
  const QleOpSpec* spec;
};

typedef void (*QleAppendOps)(std::vector<QleRegisteredOp>* out);

struct QleOpRegistrar {
  explicit QleOpRegistrar(QleAppendOps append);
};

// Every registered op, created on first use and never freed (sessions keep pointers into them).
const std::vector<QleRegisteredOp>& qle_registered_ops();

// Appends a TOp(*spec) for each of `specs`.
template <typename TOp>
void qle_append_ops(std::initializer_list<const QleOpSpec*> specs, std::vector<QleRegisteredOp>* out) {
  for (const QleOpSpec* spec : specs) out->push_back(QleRegisteredOp{new TOp(*spec), spec});
}
