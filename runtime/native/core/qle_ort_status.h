// Error handling shared by the op registrations (every <family>/*_ops.cc). No C++ exception may
// cross onnxruntime's C API, so every kernel body runs inside qle_guarded, which turns one into a status
// naming the op. Include after onnxruntime_cxx_api.h (each registration unit includes it with
// ORT_API_MANUAL_INIT).
#pragma once

#include <exception>
#include <string>

template <typename F>
OrtStatusPtr qle_guarded(const char* op, F&& body) {
  try {
    return body();
  } catch (const Ort::Exception& e) {
    return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), (std::string(op) + ": " + e.what()).c_str());
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, (std::string(op) + ": " + e.what()).c_str());
  }
}
