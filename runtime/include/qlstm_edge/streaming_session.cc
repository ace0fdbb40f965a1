// qlstm_edge::StreamingSession over onnxruntime's C++ API (see streaming_session.h). Every check and message
// follows runtime/session.py and runtime/metadata.py, so a C++ client and a Python one refuse the same calls
// with the same words.
#define ORT_API_MANUAL_INIT
#include "qlstm_edge/streaming_session.h"

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <onnxruntime_cxx_api.h>

namespace qlstm_edge {
namespace {

using json = nlohmann::json;

constexpr const char* kMetadataKey = "qlstm_edge";
constexpr const char* kFormat = "qlstm_edge.onnx";
constexpr int64_t kFormatVersion = 1;
constexpr int64_t kDomainVersion = 1;
constexpr const char* kNativeLibEnv = "QLSTM_EDGE_NATIVE_LIB";
// the most a stream's state and one step's output may take (runtime/session.py MAX_STREAM_BYTES)
constexpr int64_t kMaxStreamBytes = int64_t{1} << 30;

// -- Python-style text, so that messages read as runtime/session.py writes them -------------------
std::string py_str(const std::string& s) { return "'" + s + "'"; }

std::string py_list(const std::vector<int64_t>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out + "]";
}

std::string py_list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + py_str(v[i]);
  return out + "]";
}

std::string py_dims(const std::vector<Dim>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    out += (i ? ", " : "") + (dims[i].fixed() ? std::to_string(dims[i].size) : py_str(dims[i].name));
  return out + "]";
}

std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream s;
  s.precision(8);
  s << v;
  return s.str();
}

std::vector<int64_t> unravel(int64_t flat, const std::vector<int64_t>& shape) {
  std::vector<int64_t> idx(shape.size());
  for (size_t a = shape.size(); a-- > 0;) {
    idx[a] = flat % shape[a];
    flat /= shape[a];
  }
  return idx;
}

// -- onnxruntime ---------------------------------------------------------------------------------
void init_ort_api() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    const OrtApiBase* base = OrtGetApiBase();
    const OrtApi* api = base->GetApi(ORT_API_VERSION);
    if (api == nullptr) {
      failure = "onnxruntime " + std::string(base->GetVersionString()) + " does not provide the C API version " +
                std::to_string(ORT_API_VERSION) + " these headers were written for: link an onnxruntime of 1." +
                std::to_string(ORT_API_VERSION) + " or newer";
      return;
    }
    Ort::InitApi(api);
  });
  if (!failure.empty()) throw OnnxRuntimeError(failure);
}

Ort::Env& ort_env() {
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "qlstm_edge");
  return env;
}

ONNXTensorElementDataType ort_type(DType t) {
  switch (t) {
    case DType::float32: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    case DType::float16: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    case DType::float64: return ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;
    case DType::int64: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
    case DType::int32: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    case DType::int8: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    case DType::uint8: return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  }
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

std::string ort_type_name(ONNXTensorElementDataType t) {
  for (DType d : {DType::float32, DType::float16, DType::float64, DType::int64, DType::int32, DType::int8,
                  DType::uint8})
    if (ort_type(d) == t) return dtype_name(d);
  return "tensor type " + std::to_string(static_cast<int>(t));
}

Ort::Value wrap(Tensor& t) {
  static const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  return Ort::Value::CreateTensor(cpu, t.bytes.data(), t.bytes.size(), t.shape.data(), t.shape.size(),
                                  ort_type(t.dtype));
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// -- metadata --------------------------------------------------------------------------------------
// ``d`` is an object with only the keys of ``known`` and every key of ``required`` (metadata.py _fields).
void check_fields(const json& d, const std::vector<std::string>& known, const std::vector<std::string>& required,
                  const std::string& where) {
  if (!d.is_object()) throw ModelFileError(where + " must be an object, got " + d.dump());
  std::vector<std::string> unknown, missing;
  for (const auto& item : d.items())
    if (std::find(known.begin(), known.end(), item.key()) == known.end()) unknown.push_back(item.key());
  for (const auto& key : required)
    if (!d.contains(key)) missing.push_back(key);
  if (!unknown.empty()) throw ModelFileError(where + " has unknown fields " + py_list(unknown));
  if (!missing.empty()) throw ModelFileError(where + " lacks the fields " + py_list(missing));
}

std::vector<Dim> parse_shape(const json& shape, const std::string& where) {
  std::vector<Dim> out;
  for (size_t k = 0; k < shape.size(); ++k) {
    const json& d = shape[k];
    Dim dim;
    if (d.is_number_integer() && d.get<int64_t>() >= 0) {
      dim.size = d.get<int64_t>();
    } else if (d.is_string() && !d.get<std::string>().empty()) {
      dim.name = d.get<std::string>();
    } else {
      throw ModelFileError(where + ".shape[" + std::to_string(k) +
                           "] must be a non-negative integer or a symbolic name, got " + d.dump());
    }
    out.push_back(dim);
  }
  return out;
}

DType parse_dtype(const json& d, const std::string& where) {
  const std::string name = d.get<std::string>();
  for (const char* ok : {"float32", "float16", "int64", "int32", "int8", "uint8"})
    if (name == ok) return dtype_from_name(name);
  throw ModelFileError(where + ".dtype must be one of ['float32', 'float16', 'int64', 'int32', 'int8', 'uint8'], "
                       "got " + py_str(name));
}

TensorSpec parse_tensor(const json& t, const std::string& where, size_t lead, bool fixed_tail) {
  check_fields(t, {"name", "shape", "dtype", "range"}, {"name", "shape", "dtype"}, where);
  TensorSpec s;
  s.name = t.at("name").get<std::string>();
  if (s.name.empty()) throw ModelFileError(where + ".name must not be empty");
  s.shape = parse_shape(t.at("shape"), where);
  s.dtype = parse_dtype(t.at("dtype"), where);
  bool ok = s.shape.size() >= lead && !s.shape[0].fixed() && s.shape[0].name == "batch";
  for (size_t a = 0; ok && a < lead; ++a) ok = !s.shape[a].fixed();
  for (size_t a = lead; ok && fixed_tail && a < s.shape.size(); ++a) ok = s.shape[a].fixed();
  if (!ok)
    throw ModelFileError(where + ".shape must start with the symbolic axes " +
                         py_list(lead == 2 ? std::vector<std::string>{"batch", "time"} : std::vector<std::string>{"batch"}) +
                         (fixed_tail ? " then fixed sizes" : "") + ", got " + py_dims(s.shape));
  if (t.contains("range") && !t["range"].is_null()) {
    const json& r = t["range"];
    if (r.size() != 2 || !r[0].is_number_integer() || !r[1].is_number_integer() ||
        r[0].get<int64_t>() >= r[1].get<int64_t>())
      throw ModelFileError(where + ".range must be [lo, hi] with integers lo < hi, got " + r.dump());
    if (s.dtype == DType::float32 || s.dtype == DType::float16)
      throw ModelFileError(where + ".range is for integer token ids, but the tensor is " + dtype_name(s.dtype));
    s.has_range = true;
    s.range_lo = r[0].get<int64_t>();
    s.range_hi = r[1].get<int64_t>();
  }
  return s;
}

// The largest magnitude a state's initial value may have in its dtype.
double dtype_max(DType t) {
  switch (t) {
    case DType::float32: return 3.4028234663852886e38;
    case DType::float16: return 65504.0;
    case DType::int64: return 9.2233720368547758e18;
    case DType::int32: return 2147483647.0;
    case DType::int8: return 127.0;
    case DType::uint8: return 255.0;
    case DType::float64: return 1.7976931348623157e308;
  }
  return 0.0;
}

StateSpec parse_state(const json& j, const std::string& where) {
  check_fields(j, {"name", "input", "output", "shape", "dtype", "init"}, {"name", "input", "output", "shape"}, where);
  StateSpec s;
  s.name = j.at("name").get<std::string>();
  s.input = j.at("input").get<std::string>();
  s.output = j.at("output").get<std::string>();
  for (const auto& [key, value] : {std::pair<const char*, const std::string&>{"name", s.name}, {"input", s.input},
                                   {"output", s.output}})
    if (value.empty()) throw ModelFileError(where + "." + key + " must not be empty");
  s.shape = parse_shape(j.at("shape"), where);
  bool ok = !s.shape.empty() && s.shape[0].name == "batch";
  for (size_t a = 1; ok && a < s.shape.size(); ++a) ok = s.shape[a].fixed();
  if (!ok) throw ModelFileError(where + ".shape must be ['batch', fixed sizes...], got " + py_dims(s.shape));
  s.dtype = j.contains("dtype") ? parse_dtype(j["dtype"], where) : DType::float32;
  s.init = j.value("init", 0.0);
  const bool is_float = s.dtype == DType::float32 || s.dtype == DType::float16;
  const double lowest = is_float ? -dtype_max(s.dtype) : s.dtype == DType::uint8 ? 0.0 : -dtype_max(s.dtype) - 1.0;
  if (!(lowest <= s.init && s.init <= dtype_max(s.dtype)) || (!is_float && s.init != std::floor(s.init)))
    throw ModelFileError(where + ".init " + j.at("init").dump() + " is not a finite value of its dtype " +
                         dtype_name(s.dtype));
  return s;
}

void check_unique(const std::vector<std::string>& names, const std::string& kind) {
  std::set<std::string> seen, twice;
  for (const auto& n : names)
    if (!seen.insert(n).second) twice.insert(n);
  if (!twice.empty())
    throw ModelFileError(kind + "s must be unique, " + py_list(std::vector<std::string>(twice.begin(), twice.end())) +
                         " appear more than once");
}

void parse_document(const json& d, ModelMetadata& m) {
  check_fields(d, {"family", "mode", "target", "inputs", "outputs", "states", "toolkit_version", "custom_ops",
                   "quantization", "config", "extra", "format", "format_version", "domain", "domain_version"},
               {"family", "mode", "target", "inputs", "outputs", "states", "toolkit_version"}, "metadata");
  m.family = d.at("family").get<std::string>();
  m.mode = d.at("mode").get<std::string>();
  m.target = d.at("target").get<std::string>();
  m.toolkit_version = d.at("toolkit_version").get<std::string>();
  if (m.mode != "step" && m.mode != "sequence")
    throw ModelFileError("metadata.mode must be 'step' or 'sequence', got " + py_str(m.mode));
  if (d.at("inputs").size() != 1 || d.at("outputs").size() != 1)
    throw ModelFileError("metadata must name exactly one data input and one data output");
  const size_t lead = m.mode == "sequence" ? 2 : 1;
  m.input = parse_tensor(d["inputs"][0], "inputs[0]", lead, false);
  m.output = parse_tensor(d["outputs"][0], "outputs[0]", lead, true);
  const json& states = d.at("states");
  for (size_t k = 0; k < states.size(); ++k) m.states.push_back(parse_state(states[k], "states[" + std::to_string(k) + "]"));
  if (d.contains("custom_ops")) m.custom_ops = d["custom_ops"].get<std::vector<std::string>>();
  if (d.contains("quantization") && d["quantization"].is_object())
    m.quantization = d["quantization"].value("mode", "");
  std::vector<std::string> names, inputs{m.input.name}, outputs{m.output.name};
  for (const auto& s : m.states) {
    names.push_back(s.name);
    inputs.push_back(s.input);
    outputs.push_back(s.output);
  }
  check_unique(names, "state name");
  check_unique(inputs, "graph input");
  check_unique(outputs, "graph output");
}

// extra["max_steps"] and extra["step_counter"]: the int64 [batch] state that counts a stream's steps
void parse_step_limit(const json& d, ModelMetadata& m, const std::string& source) {
  if (!d.contains("extra") || !d["extra"].is_object() || !d["extra"].contains("max_steps")) return;
  const json& extra = d["extra"];
  const json& limit = extra["max_steps"];
  const json counter = extra.value("step_counter", json());
  const StateSpec* spec = nullptr;
  for (const auto& s : m.states)
    if (counter.is_string() && s.name == counter.get<std::string>()) spec = &s;
  if (!limit.is_number_integer() || limit.get<int64_t>() < 1 || spec == nullptr || spec->dtype != DType::int64 ||
      spec->shape.size() != 1)
    throw ModelFileError(source + ": metadata extra max_steps=" + limit.dump() +
                         " needs a positive integer and step_counter naming an int64 [batch] state, got step_counter=" +
                         (counter.is_string() ? py_str(counter.get<std::string>()) : counter.dump()));
  m.max_steps = limit.get<int64_t>();
  m.step_counter = spec->name;
}

// -- the native op library -------------------------------------------------------------------------
// The custom ops a library registers, from its qle_native_info() JSON. The handle stays open: onnxruntime opens
// the same file, and the kernels must stay loaded as long as sessions use them.
std::vector<std::string> native_library_ops(const std::string& path) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) throw NativeLibraryError("cannot load the native op library " + path + ": " + dlerror());
  auto info = reinterpret_cast<const char* (*)()>(dlsym(handle, "qle_native_info"));
  if (info == nullptr) throw NativeLibraryError(path + " is not a qlstm_edge native op library (no qle_native_info)");
  return json::parse(info()).at("ops").get<std::vector<std::string>>();
}

}  // namespace

const char* dtype_name(DType t) {
  switch (t) {
    case DType::float32: return "float32";
    case DType::float16: return "float16";
    case DType::float64: return "float64";
    case DType::int64: return "int64";
    case DType::int32: return "int32";
    case DType::int8: return "int8";
    case DType::uint8: return "uint8";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (DType d : {DType::float32, DType::float16, DType::float64, DType::int64, DType::int32, DType::int8,
                  DType::uint8})
    if (name == dtype_name(d)) return d;
  throw Error("unknown dtype " + py_str(name));
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::float64: case DType::int64: return 8;
    case DType::float32: case DType::int32: return 4;
    case DType::float16: return 2;
    case DType::int8: case DType::uint8: return 1;
  }
  return 0;
}

Tensor Tensor::zeros(DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.assign(static_cast<size_t>(t.size()) * dtype_size(dtype), 0);
  return t;
}

int64_t Tensor::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

ModelMetadata parse_metadata(const std::string& text, const std::string& source) {
  const std::string key = py_str(kMetadataKey);
  json d;
  try {
    d = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ModelFileError(source + ": the " + key + " metadata is not valid JSON (" + e.what() + ")");
  }
  if (!d.is_object() || d.value("format", json()) != kFormat)
    throw ModelFileError(source + ": the " + key + " metadata is not a qlstm-edge model description");
  const json version = d.value("format_version", json());
  if (!version.is_number_integer() || version.get<int64_t>() > kFormatVersion)
    throw ModelFileError(source + ": metadata format version " + version.dump() +
                         " is newer than this runtime supports (" + std::to_string(kFormatVersion) +
                         "); the file was written by qlstm-edge " + d.value("toolkit_version", "?") +
                         ": upgrade qlstm-edge to run it");
  const json domain_version = d.value("domain_version", json(kDomainVersion));
  if (!domain_version.is_number_integer() || domain_version.get<int64_t>() < 1)
    throw ModelFileError(source + ": metadata field 'domain_version' must be a positive integer, got " +
                         domain_version.dump());
  if (domain_version.get<int64_t>() > kDomainVersion)
    throw ModelFileError(source + ": uses qlstm_edge op-set version " + domain_version.dump() +
                         ", this runtime knows up to " + std::to_string(kDomainVersion) + "; upgrade qlstm-edge");
  ModelMetadata m;
  try {
    parse_document(d, m);
  } catch (const ModelFileError& e) {
    throw ModelFileError(source + ": malformed " + key + " metadata: " + e.what());
  } catch (const json::exception& e) {
    throw ModelFileError(source + ": malformed " + key + " metadata: " + e.what());
  }
  parse_step_limit(d, m, source);
  m.json = text;
  return m;
}

// -- the session -----------------------------------------------------------------------------------
struct StreamingSession::Impl {
  std::string path;
  Options options;
  ModelMetadata meta;
  std::unique_ptr<Ort::Session> session;
  std::string op_path = "function-body", native_note;
  bool seq = false;
  std::vector<int64_t> x_tail, y_tail;  // one step's sizes after the batch (and time) axes
  std::vector<std::string> in_names, out_names;  // the data tensor first, then the states in metadata order
  std::vector<const char*> in_ptrs, out_ptrs;

  // The stream's buffers, bound once: the call reads the states from set k and writes set 1 - k, then k flips.
  // x and y are rebuilt when x changes shape (another batch size or chunk length).
  std::vector<Tensor> sets[2];
  std::vector<Ort::Value> set_values[2], io_values;  // io_values: x, y
  std::vector<const OrtValue*> inputs[2];
  std::vector<OrtValue*> outputs[2];
  OrtValue* x_value = nullptr;
  OrtValue* y_value = nullptr;
  int k = 0;
  bool has_state = false;
  Tensor x_buf, y_buf;

  Impl(const std::string& p, const Options& o) : path(p), options(o) {}

  // -- loading --
  Ort::SessionOptions session_options() const {
    Ort::SessionOptions so;
    so.SetIntraOpNumThreads(options.threads > 0 ? options.threads : 1);
    so.SetInterOpNumThreads(1);
    so.SetExecutionMode(ORT_SEQUENTIAL);
    so.SetLogSeverityLevel(3);
    // int4 bodies: keep onnxruntime's fused MatMulNBits in float (its default quantizes activations to int8)
    so.AddConfigEntry("session.qdq_matmulnbits_accuracy_level", "0");
    return so;
  }

  // Register the native library on ``so`` when the options ask for it; returns the ops it implements (empty when
  // it is not registered; native_note says why).
  std::vector<std::string> register_native(Ort::SessionOptions& so) {
    const std::string& mode = options.native;
    if (mode != "auto" && mode != "on" && mode != "off")
      throw Error("native must be 'auto', 'on' or 'off', got " + py_str(mode));
    if (mode == "off") return {};
    std::string lib = options.native_library;
    if (lib.empty() && std::getenv(kNativeLibEnv) != nullptr) lib = std::getenv(kNativeLibEnv);
    std::string unavailable;
    std::vector<std::string> ops;
    if (lib.empty()) {
      unavailable = std::string("no native op library named (Options::native_library or $") + kNativeLibEnv + ")";
    } else {
      try {
        ops = native_library_ops(lib);
      } catch (const std::exception& e) {
        unavailable = e.what();
      }
    }
    if (!unavailable.empty()) {
      if (mode == "on") throw NativeLibraryError("native='on' but the native op library is unavailable: " + unavailable);
      native_note = unavailable;
      return {};
    }
    try {
      so.RegisterCustomOpsLibrary(lib.c_str());
    } catch (const Ort::Exception& e) {  // a library built for another onnxruntime, a broken file, ...
      if (mode == "on")
        throw NativeLibraryError(std::string("native='on' but the native op library failed to register: ") + e.what());
      native_note = "onnxruntime refused the native op library " + lib + ": " + e.what();
      return {};
    }
    return ops;
  }

  void open() {
    init_ort_api();
    if (!std::filesystem::is_regular_file(path)) throw ModelFileError(path + ": no such file");
    Ort::SessionOptions so = session_options();
    std::vector<std::string> native_ops = register_native(so);
    try {
      session = std::make_unique<Ort::Session>(ort_env(), path.c_str(), so);
    } catch (const Ort::Exception& e) {
      throw ModelFileError(path + ": not a loadable ONNX model (" + first_line(e.what()) + ")");
    }
    read_metadata();
    check_graph();
    choose_op_path(native_ops);
    layout();
  }

  void read_metadata() {
    Ort::AllocatorWithDefaultOptions alloc;
    Ort::AllocatedStringPtr text = session->GetModelMetadata().LookupCustomMetadataMapAllocated(kMetadataKey, alloc);
    if (!text)
      throw ModelFileError(path + ": an ONNX model, but not a qlstm-edge export (no " + py_str(kMetadataKey) +
                           " metadata); export it with `qlstm-edge export`");
    meta = parse_metadata(text.get(), path);
  }

  // The metadata's tensors are the graph's (names and dtypes), and a stream fits in kMaxStreamBytes.
  void check_graph() const {
    Ort::AllocatorWithDefaultOptions alloc;
    for (bool inputs : {true, false}) {
      const char* kind = inputs ? "input" : "output";
      std::map<std::string, ONNXTensorElementDataType> graph;
      const size_t n = inputs ? session->GetInputCount() : session->GetOutputCount();
      for (size_t i = 0; i < n; ++i) {
        auto name = inputs ? session->GetInputNameAllocated(i, alloc) : session->GetOutputNameAllocated(i, alloc);
        auto info = inputs ? session->GetInputTypeInfo(i) : session->GetOutputTypeInfo(i);
        graph[name.get()] = info.GetTensorTypeAndShapeInfo().GetElementType();
      }
      std::vector<std::pair<std::string, DType>> want{
          {inputs ? meta.input.name : meta.output.name, inputs ? meta.input.dtype : meta.output.dtype}};
      for (const auto& s : meta.states) want.emplace_back(inputs ? s.input : s.output, s.dtype);
      for (const auto& [name, dtype] : want) {
        auto it = graph.find(name);
        if (it == graph.end())
          throw ModelFileError(path + ": metadata names graph " + kind + " " + py_str(name) + ", which the graph lacks");
        if (it->second != ort_type(dtype))
          throw ModelFileError(path + ": metadata says graph " + kind + " " + py_str(name) + " is " + dtype_name(dtype) +
                               ", the graph has " + ort_type_name(it->second));
        graph.erase(it);
      }
      if (!graph.empty()) {
        std::vector<std::string> extra;
        for (const auto& g : graph) extra.push_back(g.first);
        throw ModelFileError(path + ": graph " + kind + "s " + py_list(extra) + " are not described by the metadata");
      }
    }
    int64_t total = 0;
    auto add = [&](const std::string& what, const std::vector<Dim>& shape, size_t lead, DType dtype) {
      int64_t size = static_cast<int64_t>(dtype_size(dtype));
      for (size_t a = lead; a < shape.size(); ++a) size *= shape[a].fixed() ? shape[a].size : 1;
      total += size;
      if (total > kMaxStreamBytes)
        throw ModelFileError(path + ": the " + what + " (" + py_dims(shape) + ", " + dtype_name(dtype) +
                             ") takes the states and one step's output of a stream over the runtime's bound of " +
                             std::to_string(kMaxStreamBytes) + " bytes a stream; refusing to allocate it");
    };
    for (const auto& s : meta.states) add("state " + py_str(s.name), s.shape, 1, s.dtype);
    add("data output", meta.output.shape, meta.mode == "sequence" ? 2 : 1, meta.output.dtype);
  }

  // "native" when the library implements every custom op the metadata lists, "mixed" when some, else
  // "function-body"; native "on" refuses anything but "native".
  void choose_op_path(const std::vector<std::string>& native_ops) {
    if (!native_ops.empty() && !meta.custom_ops.empty()) {
      size_t covered = 0;
      for (const auto& op : meta.custom_ops)
        covered += std::find(native_ops.begin(), native_ops.end(), op) != native_ops.end();
      op_path = covered == meta.custom_ops.size() ? "native" : covered ? "mixed" : "function-body";
    }
    if (options.native == "on" && op_path != "native") {
      std::vector<std::string> missing, implemented(native_ops);
      for (const auto& op : meta.custom_ops)
        if (std::find(native_ops.begin(), native_ops.end(), op) == native_ops.end()) missing.push_back(op);
      std::sort(missing.begin(), missing.end());
      std::sort(implemented.begin(), implemented.end());
      throw NativeLibraryError("native='on' but the native op library has no kernels for " + py_list(missing) +
                               " (it implements " + py_list(implemented) + "); use native='auto'");
    }
  }

  void layout() {
    seq = meta.mode == "sequence";
    const size_t lead = seq ? 2 : 1;
    for (size_t a = lead; a < meta.input.shape.size(); ++a) {
      if (!meta.input.shape[a].fixed())
        throw ModelFileError(path + ": the data input's shape " + py_dims(meta.input.shape) +
                             " has symbolic sizes past its leading axes, which this runtime does not stream");
      x_tail.push_back(meta.input.shape[a].size);
    }
    for (size_t a = lead; a < meta.output.shape.size(); ++a) y_tail.push_back(meta.output.shape[a].size);
    in_names = {meta.input.name};
    out_names = {meta.output.name};
    for (const auto& s : meta.states) {
      in_names.push_back(s.input);
      out_names.push_back(s.output);
    }
    for (const auto& n : in_names) in_ptrs.push_back(n.c_str());
    for (const auto& n : out_names) out_ptrs.push_back(n.c_str());
  }

  // -- state --
  int64_t batch() const { return has_state ? sets[k][0].shape[0] : 0; }

  void fill_initial(std::vector<Tensor>& set, const std::vector<int64_t>& rows) const {
    for (size_t i = 0; i < meta.states.size(); ++i) {
      const StateSpec& s = meta.states[i];
      Tensor& t = set[i];
      const int64_t row = t.size() / t.shape[0];
      for (int64_t r : rows) {
        for (int64_t j = r * row; j < (r + 1) * row; ++j) {
          switch (t.dtype) {
            case DType::float32: t.data<float>()[j] = static_cast<float>(s.init); break;
            case DType::int64: t.data<int64_t>()[j] = static_cast<int64_t>(s.init); break;
            case DType::int32: t.data<int32_t>()[j] = static_cast<int32_t>(s.init); break;
            case DType::int8: t.data<int8_t>()[j] = static_cast<int8_t>(s.init); break;
            case DType::uint8: t.data<uint8_t>()[j] = static_cast<uint8_t>(s.init); break;
            case DType::float64: t.data<double>()[j] = s.init; break;
            case DType::float16:
              if (s.init != 0.0) throw ModelFileError(path + ": a float16 state with a non-zero init is not supported");
              t.data<uint16_t>()[j] = 0;
              break;
          }
        }
      }
    }
  }

  // Allocate both buffer sets for ``b`` streams and bind them; set k holds ``state`` (or the initial state).
  void allocate(int64_t b, const std::map<std::string, Tensor>* state) {
    for (auto& set : sets) {
      set.clear();
      for (const auto& s : meta.states) {
        std::vector<int64_t> shape{b};
        for (size_t a = 1; a < s.shape.size(); ++a) shape.push_back(s.shape[a].size);
        set.push_back(Tensor::zeros(s.dtype, shape));
      }
    }
    k = 0;
    if (state != nullptr) {
      for (size_t i = 0; i < meta.states.size(); ++i) {
        const Tensor& t = state->at(meta.states[i].name);
        std::memcpy(sets[0][i].bytes.data(), t.bytes.data(), t.bytes.size());
      }
    } else {
      std::vector<int64_t> all(b);
      for (int64_t r = 0; r < b; ++r) all[r] = r;
      fill_initial(sets[0], all);
    }
    for (int s = 0; s < 2; ++s) {
      set_values[s].clear();
      for (auto& t : sets[s]) set_values[s].push_back(wrap(t));
    }
    has_state = true;
    x_buf.shape.clear();  // x and y are bound again on the next call
  }

  void bind_io(const std::vector<int64_t>& x_shape) {
    if (x_buf.shape == x_shape) return;
    x_buf = Tensor::zeros(meta.input.dtype, x_shape);
    std::vector<int64_t> y_shape(x_shape.begin(), x_shape.begin() + (seq ? 2 : 1));
    y_shape.insert(y_shape.end(), y_tail.begin(), y_tail.end());
    y_buf = Tensor::zeros(meta.output.dtype, y_shape);
    io_values.clear();
    io_values.push_back(wrap(x_buf));
    io_values.push_back(wrap(y_buf));
    x_value = io_values[0];
    y_value = io_values[1];
    link();
  }

  // -- checks (runtime/session.py _explain_bad_x, in its order) --
  void check_x(const Tensor& x, bool chunk) const {
    const std::string what = chunk ? "x chunk" : "x";
    const TensorSpec& spec = meta.input;
    if (x.dtype != spec.dtype)
      throw InputError(what + " has dtype " + dtype_name(x.dtype) + ", expected " + dtype_name(spec.dtype) +
                       " (use x.astype(np." + dtype_name(spec.dtype) + "))");
    std::vector<Dim> want{Dim{-1, "batch"}};
    if (chunk) want.push_back(Dim{-1, "time"});
    for (int64_t d : x_tail) want.push_back(Dim{d, ""});
    if (x.shape.size() != want.size())
      throw InputError(what + " has rank " + std::to_string(x.shape.size()) + " (shape " + py_list(x.shape) +
                       "), expected rank " + std::to_string(want.size()) + ": " + py_dims(want));
    if (x.shape[0] == 0) throw InputError(what + " has batch size 0");
    for (size_t a = 0; a < want.size(); ++a)
      if (want[a].fixed() && x.shape[a] != want[a].size)
        throw InputError(what + " has shape " + py_list(x.shape) + ", expected " + py_dims(want) + " (axis " +
                         std::to_string(a) + " must be " + std::to_string(want[a].size) + ")");
    for (int64_t d : x.shape)
      if (d < 0) throw InputError(what + " has a negative size in its shape " + py_list(x.shape));
    if (x.bytes.size() != static_cast<size_t>(x.size()) * dtype_size(x.dtype))
      throw InputError(what + " holds " + std::to_string(x.bytes.size()) + " bytes, its shape " + py_list(x.shape) +
                       " and dtype " + dtype_name(x.dtype) + " need " +
                       std::to_string(static_cast<size_t>(x.size()) * dtype_size(x.dtype)));
    if (x.size() == 0) return;
    if (spec.has_range)
      check_range(x, what);
    else if (!options.allow_nonfinite)
      check_finite(x, what);
  }

  void check_range(const Tensor& x, const std::string& what) const {
    const TensorSpec& spec = meta.input;
    for (int64_t i = 0; i < x.size(); ++i) {
      int64_t id = 0;
      switch (x.dtype) {
        case DType::int64: id = x.data<int64_t>()[i]; break;
        case DType::int32: id = x.data<int32_t>()[i]; break;
        case DType::int8: id = x.data<int8_t>()[i]; break;
        case DType::uint8: id = x.data<uint8_t>()[i]; break;
        default: return;
      }
      if (id < spec.range_lo || id >= spec.range_hi)
        throw InputError(what + ": token id " + std::to_string(id) + " at index " + py_list(unravel(i, x.shape)) +
                         " is out of the vocabulary range [" + std::to_string(spec.range_lo) + ", " +
                         std::to_string(spec.range_hi) + ")");
    }
  }

  static void check_finite(const Tensor& x, const std::string& what) {
    for (int64_t i = 0; i < x.size(); ++i) {
      double v = 0.0;
      switch (x.dtype) {
        case DType::float32: v = x.data<float>()[i]; break;
        case DType::float64: v = x.data<double>()[i]; break;
        case DType::float16: {
          const uint16_t h = x.data<uint16_t>()[i];
          if ((h & 0x7c00) != 0x7c00) continue;
          v = (h & 0x03ff) ? NAN : (h & 0x8000) ? -INFINITY : INFINITY;
          break;
        }
        default: return;
      }
      if (!std::isfinite(v))
        throw InputError(what + " has a non-finite value " + py_float(v) + " at index " +
                         py_list(unravel(i, x.shape)) + " (pass allow_nonfinite=True to let NaN/Inf through)");
    }
  }

  void prepare_state(int64_t b) {
    if (!has_state) {
      allocate(b, nullptr);
    } else if (batch() != b) {
      throw InputError("x has batch size " + std::to_string(b) + " but the stream's state has batch size " +
                       std::to_string(batch()) + "; call reset(batch_size=" + std::to_string(b) +
                       ") to start new streams");
    }
  }

  void check_limit(int64_t steps) const {
    if (meta.max_steps == 0) return;
    size_t i = 0;
    while (meta.states[i].name != meta.step_counter) ++i;
    const Tensor& counter = sets[k][i];
    for (int64_t r = 0; r < counter.shape[0]; ++r) {
      const int64_t taken = counter.data<int64_t>()[r];
      if (taken > meta.max_steps - steps)
        throw StreamLimitError("stream " + std::to_string(r) + " has taken " + std::to_string(taken) +
                               " steps and this model holds at most " + std::to_string(meta.max_steps) +
                               " steps per stream (metadata extra['max_steps']): " + std::to_string(steps) +
                               " more would pass the limit; call reset(rows=[" + std::to_string(r) +
                               "]) to start that stream again");
    }
  }

  // -- running --
  // The value arrays of both parities: inputs (x, set k) and outputs (y, set 1 - k).
  void link() {
    for (int p = 0; p < 2; ++p) {
      inputs[p] = {x_value};
      outputs[p] = {y_value};
      for (size_t i = 0; i < meta.states.size(); ++i) {
        inputs[p].push_back(set_values[p][i]);
        outputs[p].push_back(set_values[1 - p][i]);
      }
    }
  }

  // One onnxruntime call on the bound buffers (x already copied into x_buf); the state moves on only when it
  // succeeds: a failed call leaves set k, the live state, as it was.
  void call() {
    OrtStatus* status = Ort::GetApi().Run(*session, nullptr, in_ptrs.data(), inputs[k].data(), inputs[k].size(),
                                          out_ptrs.data(), outputs[k].size(), outputs[k].data());
    if (status != nullptr) {
      const std::string msg = Ort::GetApi().GetErrorMessage(status);
      Ort::GetApi().ReleaseStatus(status);
      throw OnnxRuntimeError("onnxruntime: " + msg);
    }
    k ^= 1;
  }
};

StreamingSession::StreamingSession(const std::string& path, const Options& options)
    : impl_(std::make_unique<Impl>(path, options)) {
  impl_->open();
}

StreamingSession::~StreamingSession() = default;

const ModelMetadata& StreamingSession::metadata() const { return impl_->meta; }
const std::string& StreamingSession::op_path() const { return impl_->op_path; }
const std::string& StreamingSession::native_note() const { return impl_->native_note; }
int64_t StreamingSession::batch_size() const { return impl_->batch(); }

std::vector<std::string> StreamingSession::state_names() const {
  std::vector<std::string> names;
  for (const auto& s : impl_->meta.states) names.push_back(s.name);
  return names;
}

Tensor StreamingSession::step(const Tensor& x) {
  Impl& m = *impl_;
  m.check_x(x, false);
  m.prepare_state(x.shape[0]);
  m.check_limit(1);
  std::vector<int64_t> shape = x.shape;
  if (m.seq) shape.insert(shape.begin() + 1, 1);
  m.bind_io(shape);
  std::memcpy(m.x_buf.bytes.data(), x.bytes.data(), x.bytes.size());
  m.call();
  Tensor y = m.y_buf;
  if (m.seq) y.shape.erase(y.shape.begin() + 1);
  return y;
}

Tensor StreamingSession::run(const Tensor& x) {
  Impl& m = *impl_;
  m.check_x(x, true);
  m.prepare_state(x.shape[0]);
  const int64_t b = x.shape[0], steps = x.shape[1];
  std::vector<int64_t> y_shape{b, steps};
  y_shape.insert(y_shape.end(), m.y_tail.begin(), m.y_tail.end());
  if (steps == 0) return Tensor::zeros(m.meta.output.dtype, y_shape);
  m.check_limit(steps);
  if (m.seq) {
    m.bind_io(x.shape);
    std::memcpy(m.x_buf.bytes.data(), x.bytes.data(), x.bytes.size());
    m.call();
    return m.y_buf;
  }
  // a step-mode file runs the chunk one step at a time; a failure part way puts the state back
  std::vector<int64_t> step_shape{b};
  step_shape.insert(step_shape.end(), m.x_tail.begin(), m.x_tail.end());
  m.bind_io(step_shape);
  const std::vector<Tensor> saved = m.sets[m.k];
  const int start = m.k;
  Tensor y = Tensor::zeros(m.meta.output.dtype, y_shape);
  const size_t x_row = x.bytes.size() / static_cast<size_t>(b * steps);
  const size_t y_row = y.bytes.size() / static_cast<size_t>(b * steps);
  try {
    for (int64_t t = 0; t < steps; ++t) {
      for (int64_t r = 0; r < b; ++r)
        std::memcpy(m.x_buf.bytes.data() + r * x_row, x.bytes.data() + (r * steps + t) * x_row, x_row);
      m.call();
      for (int64_t r = 0; r < b; ++r)
        std::memcpy(y.bytes.data() + (r * steps + t) * y_row, m.y_buf.bytes.data() + r * y_row, y_row);
    }
  } catch (...) {
    m.k = start;
    for (size_t i = 0; i < saved.size(); ++i)  // into the bound buffers, which keep their addresses
      std::memcpy(m.sets[start][i].bytes.data(), saved[i].bytes.data(), saved[i].bytes.size());
    throw;
  }
  return y;
}

void StreamingSession::reset() {
  if (impl_->has_state) impl_->allocate(impl_->batch(), nullptr);
}

void StreamingSession::reset_batch(int64_t batch_size) {
  if (batch_size < 1) throw InputError("batch_size must be a positive integer, got " + std::to_string(batch_size));
  impl_->allocate(batch_size, nullptr);
}

void StreamingSession::reset_rows(const std::vector<int64_t>& rows) {
  Impl& m = *impl_;
  if (!m.has_state) throw InputError("reset(rows=...): the stream has no state yet (no step run or batch size set)");
  std::vector<int64_t> outside;
  for (int64_t r : rows)
    if (r < 0 || r >= m.batch()) outside.push_back(r);
  if (!outside.empty())
    throw InputError("reset rows " + py_list(outside) + " out of range for batch size " + std::to_string(m.batch()));
  m.fill_initial(m.sets[m.k], rows);
}

void StreamingSession::reset_mask(const std::vector<bool>& done) {
  Impl& m = *impl_;
  if (!m.has_state) throw InputError("reset(rows=...): the stream has no state yet (no step run or batch size set)");
  if (static_cast<int64_t>(done.size()) != m.batch())
    throw InputError("reset rows: a boolean mask needs one entry per stream (" + std::to_string(m.batch()) +
                     "), got " + std::to_string(done.size()));
  std::vector<int64_t> rows;
  for (size_t r = 0; r < done.size(); ++r)
    if (done[r]) rows.push_back(static_cast<int64_t>(r));
  m.fill_initial(m.sets[m.k], rows);
}

std::map<std::string, Tensor> StreamingSession::get_state() const {
  std::map<std::string, Tensor> out;
  if (!impl_->has_state) return out;
  for (size_t i = 0; i < impl_->meta.states.size(); ++i) out[impl_->meta.states[i].name] = impl_->sets[impl_->k][i];
  return out;
}

void StreamingSession::set_state(const std::map<std::string, Tensor>& state) {
  Impl& m = *impl_;
  std::vector<std::string> missing, unknown;
  std::set<std::string> names;
  for (const auto& s : m.meta.states) {
    names.insert(s.name);
    if (!state.count(s.name)) missing.push_back(s.name);
  }
  for (const auto& kv : state)
    if (!names.count(kv.first)) unknown.push_back(kv.first);
  std::sort(missing.begin(), missing.end());
  if (!missing.empty() || !unknown.empty())
    throw InputError("state does not belong to this model: missing " + py_list(missing) + ", unexpected " +
                     py_list(unknown));
  int64_t b = -1;
  for (const auto& s : m.meta.states) {
    const Tensor& t = state.at(s.name);
    if (b < 0 && !t.shape.empty()) b = t.shape[0];
    std::vector<int64_t> want{b};
    for (size_t a = 1; a < s.shape.size(); ++a) want.push_back(s.shape[a].size);
    const std::string what = "state " + py_str(s.name);
    if (t.shape != want)
      throw InputError(what + " has shape " + py_list(t.shape) + ", expected " + py_list(want));
    if (t.dtype != s.dtype)
      throw InputError(what + " has dtype " + dtype_name(t.dtype) + ", expected " + dtype_name(s.dtype));
    if (t.bytes.size() != static_cast<size_t>(t.size()) * dtype_size(t.dtype))
      throw InputError(what + " holds " + std::to_string(t.bytes.size()) + " bytes, its shape and dtype need " +
                       std::to_string(static_cast<size_t>(t.size()) * dtype_size(t.dtype)));
    if (!m.options.allow_nonfinite) Impl::check_finite(t, what);
  }
  if (m.meta.max_steps > 0) {
    const Tensor& counter = state.at(m.meta.step_counter);
    for (int64_t r = 0; r < counter.shape[0]; ++r) {
      const int64_t taken = counter.data<int64_t>()[r];
      if (taken < 0 || taken > m.meta.max_steps)
        throw InputError("state " + py_str(m.meta.step_counter) + " says stream " + std::to_string(r) + " has taken " +
                         std::to_string(taken) + " steps; a stream of this model takes 0 to " +
                         std::to_string(m.meta.max_steps) + " steps (metadata extra['max_steps'])");
    }
  }
  m.allocate(b, &state);
}

}  // namespace qlstm_edge
