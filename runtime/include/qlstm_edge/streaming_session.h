// qlstm_edge::StreamingSession: stream an exported qlstm-edge model from C++ over onnxruntime's C++ API.
//
// The C++ counterpart of the Python qlstm_edge.runtime.StreamingSession: driven only by the file's
// `qlstm_edge` metadata, it checks inputs with the same rules and error messages, carries the state
// between calls on buffers bound once, and refuses a bad call with the state unchanged.
//
//   qlstm_edge::StreamingSession s("model_step.onnx", {/*native=*/"auto"});
//   qlstm_edge::Tensor x = qlstm_edge::Tensor::zeros(qlstm_edge::DType::int64, {1});
//   qlstm_edge::Tensor y = s.step(x);          // y: [1, ...]
//   auto saved = s.get_state();  s.reset();  s.set_state(saved);
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace qlstm_edge {

// The Python runtime's exceptions (runtime/errors.py), same names and meanings.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// The file cannot be streamed: not ONNX, not a qlstm-edge export, or inconsistent metadata.
class ModelFileError : public Error {
 public:
  using Error::Error;
};
// An input or state that does not fit the model or the stream; the session's state is unchanged.
class InputError : public Error {
 public:
  using Error::Error;
};
// A call that would take a stream past the most steps the model holds (metadata extra["max_steps"]).
class StreamLimitError : public InputError {
 public:
  using InputError::InputError;
};
// The native op library is missing, cannot be loaded, or onnxruntime refused it (native "on" asks for it).
class NativeLibraryError : public Error {
 public:
  using Error::Error;
};
// onnxruntime itself failed: a library older than the headers, or a run that raised.
class OnnxRuntimeError : public Error {
 public:
  using Error::Error;
};

// float64 is here so that an input of the wrong type is named in the error, as numpy names it.
enum class DType { float32, float16, float64, int64, int32, int8, uint8 };
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& name);  // throws Error for a name outside DType
size_t dtype_size(DType t);

// A host tensor: C-order bytes, dtype and shape.
struct Tensor {
  DType dtype = DType::float32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  static Tensor zeros(DType dtype, std::vector<int64_t> shape);
  int64_t size() const;  // number of elements
  template <typename T> T* data() { return reinterpret_cast<T*>(bytes.data()); }
  template <typename T> const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
};

// One dimension of a metadata shape: a fixed size, or a symbolic name ("batch", "time").
struct Dim {
  int64_t size = -1;
  std::string name;  // non-empty for a symbolic dimension
  bool fixed() const { return name.empty(); }
};

struct TensorSpec {
  std::string name;
  std::vector<Dim> shape;
  DType dtype = DType::float32;
  bool has_range = false;  // token ids: range_lo <= id < range_hi
  int64_t range_lo = 0, range_hi = 0;
};

struct StateSpec {
  std::string name, input, output;
  std::vector<Dim> shape;  // ["batch", fixed sizes...]
  DType dtype = DType::float32;
  double init = 0.0;
};

// The parts of the `qlstm_edge` metadata document a stream needs (runtime/metadata.py).
struct ModelMetadata {
  std::string family, mode, target, toolkit_version;
  TensorSpec input, output;
  std::vector<StateSpec> states;
  std::vector<std::string> custom_ops;
  std::string quantization;  // the recipe's "mode" ("" for float32)
  int64_t max_steps = 0;     // > 0: a stream holds at most this many steps, counted by state step_counter
  std::string step_counter;
  std::string json;  // the whole document, as stored
};

// Parse and check the metadata document; ModelFileError names the field that is wrong.
ModelMetadata parse_metadata(const std::string& json_text, const std::string& source);

struct Options {
  std::string native = "auto";  // "auto" (use the native op library when given), "on" (require it), "off"
  std::string native_library;   // libqlstm_edge_ops.so; empty: $QLSTM_EDGE_NATIVE_LIB
  int threads = 1;              // onnxruntime intra-op threads (batch-1 streaming is latency-bound)
  bool allow_nonfinite = false; // let NaN/Inf inputs through instead of refusing them
};

class StreamingSession {
 public:
  explicit StreamingSession(const std::string& path, const Options& options = Options());
  ~StreamingSession();
  StreamingSession(const StreamingSession&) = delete;
  StreamingSession& operator=(const StreamingSession&) = delete;

  const ModelMetadata& metadata() const;
  const std::string& op_path() const;      // "native" (the library runs every custom op) or "function-body"
  const std::string& native_note() const;  // why the native library is not used ("" when it is)
  int64_t batch_size() const;              // 0 before the first call
  std::vector<std::string> state_names() const;

  Tensor step(const Tensor& x);  // one time step: x [B, ...] -> y [B, ...]
  Tensor run(const Tensor& x);   // a chunk: x [B, T, ...] -> y [B, T, ...]; applied whole or not at all

  void reset();                                  // restart every stream (the batch size stays)
  void reset_batch(int64_t batch_size);          // start batch_size new streams
  void reset_rows(const std::vector<int64_t>& rows);  // restart these batch rows
  void reset_mask(const std::vector<bool>& done);     // restart the rows whose entry is true
  std::map<std::string, Tensor> get_state() const;    // a copy of every state tensor (empty before a call)
  void set_state(const std::map<std::string, Tensor>& state);  // resume from get_state() output (checked)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qlstm_edge
