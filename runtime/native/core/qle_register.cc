// onnxruntime entry points of the library: RegisterCustomOps adds every registered op (qle_registry.h)
// to the qlstm_edge domain (op-set version 1); qle_native_info describes the build, the CPU paths
// this machine runs and each op's contract (qle_contract.h); qle_native_compute_calls counts kernel
// calls. The ops themselves live in their family folders (qllstm/, prlstm/, xlstm/).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <stdio.h>

#include <algorithm>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

#include "qle_contract.h"
#include "qle_cpu.h"
#include "qle_registry.h"

#define QLE_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr const char* kDomain = "qlstm_edge";

// The registrars' append functions, filled while the library is loaded.
std::vector<QleAppendOps>& registrars() {
  static std::vector<QleAppendOps> r;
  return r;
}

// Created once and shared by every session that registers the library; never released
// (sessions keep pointers into it).
OrtCustomOpDomain* g_domain = nullptr;
std::once_flag g_domain_once;
OrtStatusPtr g_domain_error = nullptr;

void create_domain(const OrtApi* api) {
  OrtCustomOpDomain* d = nullptr;
  OrtStatusPtr st = api->CreateCustomOpDomain(kDomain, &d);
  for (const QleRegisteredOp& r : qle_registered_ops()) {
    if (st != nullptr) break;
    st = api->CustomOpDomain_Add(d, r.op);
  }
  if (st != nullptr) {
    g_domain_error = st;
    if (d != nullptr) api->ReleaseCustomOpDomain(d);
    return;
  }
  g_domain = d;
}

std::string g_info;
std::once_flag g_info_once;

std::string quoted(const char* s) { return std::string("\"") + s + "\""; }

template <typename T, typename F>
std::string json_list(const std::vector<T>& items, F&& item) {
  std::string s = "[";
  for (size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + item(items[i]);
  return s + "]";
}

std::string type_list(const std::vector<ONNXTensorElementDataType>& v) {
  return json_list(v, [](ONNXTensorElementDataType t) { return quoted(qle_type_name(t)); });
}

std::string index_list(const std::vector<size_t>& v) {
  return json_list(v, [](size_t i) { return std::to_string(i); });
}

// One op's contract: {"name", "inputs", "regular", "input_types", "output_types", "matrices", "host",
// "x_in_product", "attributes", "choices"}; input_types are those of the regular inputs in an fp32 node.
std::string contract_json(const QleOpSpec& op) {
  return "{\"name\": " + quoted(op.name) + ", \"inputs\": " + json_list(op.inputs, quoted) +
         ", \"regular\": " + std::to_string(op.regular()) +
         ", \"input_types\": " + type_list(op.input_types) + ", \"output_types\": " + type_list(op.output_types) +
         ", \"matrices\": " + index_list(op.matrices) + ", \"host\": " + index_list(op.host) +
         ", \"x_in_product\": " + (op.x_in_product ? "true" : "false") +
         ", \"attributes\": " + json_list(op.attributes, quoted) + ", \"choices\": " +
         json_list(op.choices, [](const QleChoice& c) {
           return "{\"name\": " + quoted(c.name) + ", \"values\": " + json_list(c.values, quoted) + "}";
         }) + "}";
}

// The specs of the ops registered for execution provider `ep`, in registration order.
std::vector<const QleOpSpec*> registered_specs(const std::string& ep) {
  std::vector<const QleOpSpec*> specs;
  for (const QleRegisteredOp& r : qle_registered_ops())
    if (r.op->GetExecutionProviderType(r.op) == ep) specs.push_back(r.spec);
  return specs;
}

std::string build_info() {
  const char* err = nullptr;
  const QleCpuKernels* best = qle_select_isa(nullptr, &err);
  std::string isa;
  for (int i = 0; i < QLE_ISA_COUNT; ++i)
    isa += std::string(i ? ", " : "") + quoted(qle_isa_names[i]) + ": " +
           (qle_cpu_supports(qle_isa_names[i]) ? "true" : "false");
  const std::vector<const QleOpSpec*> ops = registered_specs("CPUExecutionProvider");
  std::vector<const QleOpSpec*> quantized;
  std::copy_if(ops.begin(), ops.end(), std::back_inserter(quantized),
               [](const QleOpSpec* op) { return !op->matrices.empty(); });
  auto name = [](const QleOpSpec* op) { return quoted(op->name); };
  // quant_modes apply to the quantized_ops only (the others take float32 nodes); cuda_ops are the
  // ops that also have CUDA kernels (empty without CUDA)
  return std::string("{\"arch\": \"") + QLE_ARCH + "\", \"ort_api_version\": " + std::to_string(ORT_API_VERSION) +
#if defined(QLE_WITH_CUDA)
         ", \"cuda\": true" +
#else
         ", \"cuda\": false" +
#endif
         ", \"quant_modes\": [\"fp16\", \"int8\", \"int8-dynamic\", \"int4\"], \"isa_supported\": {" + isa +
         "}, \"isa_auto\": " + quoted(best->name) + ", \"ops\": " + json_list(ops, name) +
         ", \"quantized_ops\": " + json_list(quantized, name) +
         ", \"cuda_ops\": " + json_list(registered_specs("CUDAExecutionProvider"), name) +
         ", \"contract\": " + json_list(ops, [](const QleOpSpec* op) { return contract_json(*op); }) + "}";
}

// The build fingerprint (compiler, target, flags) that runtime/native/build.py's up-to-date check
// looks for in the file.
#if !defined(QLE_BUILD_ID)
#define QLE_BUILD_ID "qlstm_edge-build:unstamped"
#endif
__attribute__((used)) const char kBuildId[] = QLE_BUILD_ID;

}  // namespace

QleOpRegistrar::QleOpRegistrar(QleAppendOps append) { registrars().push_back(append); }

const std::vector<QleRegisteredOp>& qle_registered_ops() {
  static const std::vector<QleRegisteredOp> ops = [] {
    std::vector<QleRegisteredOp> out;
    for (QleAppendOps append : registrars()) append(&out);
    return out;
  }();
  return ops;
}

QLE_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                     const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    char msg[400];
    snprintf(msg, sizeof msg,
             "qlstm_edge native ops were built for onnxruntime API version %d; this runtime "
             "(onnxruntime %s) provides an older API; use the function-body path "
             "(native='off') or rebuild the library against this runtime's headers",
             ORT_API_VERSION, api_base->GetVersionString());
    const OrtApi* old = api_base->GetApi(1);
    return old->CreateStatus(ORT_FAIL, msg);
  }
  Ort::InitApi(api);
  std::call_once(g_domain_once, create_domain, api);
  if (g_domain == nullptr) {
    char msg[400];
    snprintf(msg, sizeof msg, "qlstm_edge native ops: creating the op domain failed: %s",
             api->GetErrorMessage(g_domain_error));
    return api->CreateStatus(ORT_FAIL, msg);
  }
  return api->AddCustomOpDomain(options, g_domain);
}

// JSON description of the build and of the CPU paths this machine can run.
QLE_EXPORT const char* qle_native_info(void) {
  std::call_once(g_info_once, [] { g_info = build_info(); });
  return g_info.c_str();
}

// Number of kernel Compute calls in this process (lets tests and the runtime observe that the
// native kernel, not the function body, ran).
QLE_EXPORT unsigned long long qle_native_compute_calls(void) {
  return g_qle_compute_calls.load(std::memory_order_relaxed);
}
