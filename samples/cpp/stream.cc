// qlstm_edge_stream: stream an exported qlstm-edge model over the time axis of a .npy input, with no Python.
//
//   qlstm_edge_stream MODEL.onnx INPUT.npy [--output Y.npy] [--chunk N] [--native auto|on|off] ...
//
// INPUT is [batch, time, ...]; the program feeds it step by step (--chunk 1, StreamingSession::step) or N
// steps per call (StreamingSession::run) and writes the outputs [batch, time, ...] to --output, or prints them.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "npy.h"
#include "qlstm_edge/streaming_session.h"

namespace {

const char* kUsage = R"(usage: qlstm_edge_stream MODEL.onnx INPUT.npy [options]

Streams INPUT ([batch, time, ...], .npy) through MODEL (an exported qlstm-edge file, step or sequence mode).

  --output Y.npy        write the outputs [batch, time, ...] (default: print them)
  --chunk N             steps per call: 1 calls step() per time step, N > 1 calls run() on N steps (default 1)
  --native MODE         auto | on | off: the native op library (default auto)
  --native-lib PATH     libqlstm_edge_ops.so (default: $QLSTM_EDGE_NATIVE_LIB)
  --threads N           onnxruntime intra-op threads (default 1)
  --allow-nonfinite     let NaN/Inf inputs through
  --resume DIR          start from the states in DIR/NAME.npy (set_state)
  --save-state DIR      write the final states to DIR/NAME.npy (get_state)
  --reset T:R1,R2,...   restart batch rows R1, R2, ... before time step T (repeatable)
  --skip-refused        report a call refused with InputError ("refused: KIND: message") and go on with the next
                        one: the stream continues from the state before the refused call, its outputs stay 0
  --bench N             time N calls of step() on the input's time steps and print the mean microseconds per step
  --help                this text

Errors print "error: KIND: message" (KIND: InputError, StreamLimitError, ModelFileError, NativeLibraryError, ...)
and exit with status 1.
)";

struct Args {
  std::string model, input, output, native = "auto", native_lib, resume, save_state;
  int64_t chunk = 1, bench = 0;
  int threads = 1;
  bool allow_nonfinite = false, skip_refused = false;
  std::map<int64_t, std::vector<int64_t>> resets;  // time step -> rows restarted before it
};

Args parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string opt = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(opt + " needs a value");
      return argv[++i];
    };
    if (opt == "--help" || opt == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (opt == "--output") {
      a.output = value();
    } else if (opt == "--chunk") {
      a.chunk = std::stoll(value());
    } else if (opt == "--native") {
      a.native = value();
    } else if (opt == "--native-lib") {
      a.native_lib = value();
    } else if (opt == "--threads") {
      a.threads = std::stoi(value());
    } else if (opt == "--allow-nonfinite") {
      a.allow_nonfinite = true;
    } else if (opt == "--skip-refused") {
      a.skip_refused = true;
    } else if (opt == "--resume") {
      a.resume = value();
    } else if (opt == "--save-state") {
      a.save_state = value();
    } else if (opt == "--reset") {
      const std::string v = value();
      const size_t colon = v.find(':');
      if (colon == std::string::npos) throw std::runtime_error("--reset needs T:R1,R2,..., got " + v);
      auto& rows = a.resets[std::stoll(v.substr(0, colon))];
      for (size_t at = colon + 1; at < v.size();) {
        const size_t end = std::min(v.find(',', at), v.size());
        rows.push_back(std::stoll(v.substr(at, end - at)));
        at = end + 1;
      }
    } else if (opt == "--bench") {
      a.bench = std::stoll(value());
    } else if (opt.rfind("--", 0) == 0) {
      throw std::runtime_error("unknown option " + opt + " (see --help)");
    } else {
      positional.push_back(opt);
    }
  }
  if (positional.size() != 2) throw std::runtime_error("give MODEL.onnx and INPUT.npy (see --help)");
  if (a.chunk < 1) throw std::runtime_error("--chunk must be at least 1");
  a.model = positional[0];
  a.input = positional[1];
  return a;
}

// x[:, t0:t1] of a [batch, time, ...] tensor; with ``drop_time`` (one step) the time axis is removed.
qlstm_edge::Tensor time_slice(const qlstm_edge::Tensor& x, int64_t t0, int64_t t1, bool drop_time) {
  qlstm_edge::Tensor out;
  out.dtype = x.dtype;
  out.shape = x.shape;
  out.shape[1] = t1 - t0;
  if (drop_time) out.shape.erase(out.shape.begin() + 1);
  const int64_t b = x.shape[0], steps = x.shape[1];
  const size_t row = steps ? x.bytes.size() / static_cast<size_t>(b * steps) : 0;
  out.bytes.resize(static_cast<size_t>(b * (t1 - t0)) * row);
  for (int64_t r = 0; r < b; ++r)
    std::memcpy(out.bytes.data() + r * (t1 - t0) * row, x.bytes.data() + (r * steps + t0) * row, (t1 - t0) * row);
  return out;
}

// Put y (the outputs of steps t0.. of one call; [batch, ...] for one step) into ys [batch, time, ...].
void place(qlstm_edge::Tensor& ys, const qlstm_edge::Tensor& y, int64_t t0, int64_t n) {
  const int64_t b = ys.shape[0], steps = ys.shape[1];
  const size_t row = ys.bytes.size() / static_cast<size_t>(b * steps);
  for (int64_t r = 0; r < b; ++r)
    std::memcpy(ys.bytes.data() + (r * steps + t0) * row, y.bytes.data() + r * n * row, n * row);
}

std::string error_kind(const std::exception& e) {
  if (dynamic_cast<const qlstm_edge::StreamLimitError*>(&e)) return "StreamLimitError";
  if (dynamic_cast<const qlstm_edge::InputError*>(&e)) return "InputError";
  if (dynamic_cast<const qlstm_edge::ModelFileError*>(&e)) return "ModelFileError";
  if (dynamic_cast<const qlstm_edge::NativeLibraryError*>(&e)) return "NativeLibraryError";
  if (dynamic_cast<const qlstm_edge::OnnxRuntimeError*>(&e)) return "OnnxRuntimeError";
  return "Error";
}

// The outputs of the whole stream, [batch, time, ...], zero until a call fills them.
qlstm_edge::Tensor outputs_for(const qlstm_edge::ModelMetadata& m, int64_t batch, int64_t steps) {
  std::vector<int64_t> shape{batch, steps};
  for (size_t a = m.mode == "sequence" ? 2 : 1; a < m.output.shape.size(); ++a) shape.push_back(m.output.shape[a].size);
  return qlstm_edge::Tensor::zeros(m.output.dtype, shape);
}

qlstm_edge::Tensor stream(qlstm_edge::StreamingSession& s, const Args& a, const qlstm_edge::Tensor& x) {
  const int64_t steps = x.shape[1];
  qlstm_edge::Tensor ys = outputs_for(s.metadata(), x.shape[0], steps);
  for (int64_t t = 0; t < steps;) {
    auto reset = a.resets.find(t);
    if (reset != a.resets.end()) s.reset_rows(reset->second);
    int64_t end = std::min(t + a.chunk, steps);
    auto next = a.resets.upper_bound(t);  // a chunk ends where the next reset is
    if (next != a.resets.end()) end = std::min(end, next->first);
    try {
      const qlstm_edge::Tensor y =
          a.chunk == 1 ? s.step(time_slice(x, t, t + 1, true)) : s.run(time_slice(x, t, end, false));
      place(ys, y, t, end - t);
    } catch (const qlstm_edge::InputError& e) {
      if (!a.skip_refused) throw;
      std::fprintf(stderr, "refused: %s: %s\n", error_kind(e).c_str(), e.what());
    }
    t = end;
  }
  return ys;
}

double bench_step_us(qlstm_edge::StreamingSession& s, const qlstm_edge::Tensor& x, int64_t n) {
  std::vector<qlstm_edge::Tensor> steps;
  for (int64_t t = 0; t < x.shape[1]; ++t) steps.push_back(time_slice(x, t, t + 1, true));
  for (int64_t i = 0; i < std::min<int64_t>(n, 50); ++i) s.step(steps[i % steps.size()]);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n; ++i) s.step(steps[i % steps.size()]);
  const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - start;
  return took.count() / static_cast<double>(n);
}

void print(const qlstm_edge::Tensor& y) {
  if (y.dtype != qlstm_edge::DType::float32) throw std::runtime_error("the outputs are not float32: write them with --output");
  std::printf("y: %s [", qlstm_edge::dtype_name(y.dtype));
  for (size_t a = 0; a < y.shape.size(); ++a) std::printf(a ? ", %lld" : "%lld", static_cast<long long>(y.shape[a]));
  std::printf("]\n");
  const int64_t row = y.shape.size() > 2 ? y.size() / (y.shape[0] * y.shape[1]) : 1;
  for (int64_t i = 0; i < y.size(); ++i) {
    std::printf(i % row ? " %.9g" : "%.9g", static_cast<double>(y.data<float>()[i]));
    if ((i + 1) % row == 0) std::printf("\n");
  }
}

int run_main(const Args& a) {
  qlstm_edge::Options options;
  options.native = a.native;
  options.native_library = a.native_lib;
  options.threads = a.threads;
  options.allow_nonfinite = a.allow_nonfinite;
  qlstm_edge::StreamingSession s(a.model, options);
  std::fprintf(stderr, "%s (%s, %s): op_path %s%s%s\n", a.model.c_str(), s.metadata().family.c_str(),
               s.metadata().mode.c_str(), s.op_path().c_str(), s.native_note().empty() ? "" : "; ",
               s.native_note().c_str());
  const qlstm_edge::Tensor x = npy::load(a.input);
  if (x.shape.size() < 2) throw std::runtime_error(a.input + ": the input must be [batch, time, ...]");
  if (!a.resume.empty()) {
    std::map<std::string, qlstm_edge::Tensor> state;  // every NAME.npy of the folder: set_state checks the names
    for (const auto& f : std::filesystem::directory_iterator(a.resume))
      if (f.path().extension() == ".npy") state[f.path().stem().string()] = npy::load(f.path().string());
    s.set_state(state);
  }
  if (a.bench > 0) {
    std::printf("step_us %.3f\n", bench_step_us(s, x, a.bench));
    return 0;
  }
  const qlstm_edge::Tensor y = stream(s, a, x);
  if (!a.output.empty()) npy::save(a.output, y);
  else print(y);
  if (!a.save_state.empty())
    for (const auto& [name, t] : s.get_state()) npy::save(a.save_state + "/" + name + ".npy", t);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run_main(parse_args(argc, argv));
  } catch (const qlstm_edge::Error& e) {
    std::fprintf(stderr, "error: %s: %s\n", error_kind(e).c_str(), e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 1;
}
