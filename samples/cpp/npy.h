// Minimal .npy reading and writing (format version 1.0): little-endian, C-order arrays of the dtypes a
// qlstm_edge::Tensor holds. The format is a magic string, a Python-dict header and the raw bytes.
#pragma once

#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "qlstm_edge/streaming_session.h"

namespace npy {

struct Descr {
  const char* code;
  qlstm_edge::DType dtype;
};
inline const std::vector<Descr>& descrs() {
  using qlstm_edge::DType;
  static const std::vector<Descr> d{{"<f4", DType::float32}, {"<f2", DType::float16}, {"<f8", DType::float64},
                                    {"<i8", DType::int64},   {"<i4", DType::int32},   {"|i1", DType::int8},
                                    {"|u1", DType::uint8}};
  return d;
}

// The value of ``key`` in the header dict, up to the next top-level comma or closing brace.
inline std::string header_field(const std::string& header, const std::string& key, const std::string& path) {
  const size_t at = header.find("'" + key + "':");
  if (at == std::string::npos) throw std::runtime_error(path + ": .npy header lacks '" + key + "'");
  size_t start = at + key.size() + 3, end = start;
  int depth = 0;
  for (; end < header.size(); ++end) {
    const char c = header[end];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
    if (depth < 0) break;
  }
  if (header[end] == ')') ++end;
  std::string v = header.substr(start, end - start);
  v.erase(0, v.find_first_not_of(' '));
  return v;
}

inline qlstm_edge::Tensor load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open");
  char magic[8];
  f.read(magic, 8);
  if (!f || std::string(magic, 6) != "\x93NUMPY") throw std::runtime_error(path + ": not a .npy file");
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t(b[3]) << 24);
  }
  std::string header(header_len, '\0');
  f.read(&header[0], header_len);
  if (header_field(header, "fortran_order", path) != "False")
    throw std::runtime_error(path + ": Fortran-order arrays are not read; save a C-order array");
  const std::string descr = header_field(header, "descr", path);
  qlstm_edge::Tensor t;
  bool known = false;
  for (const auto& d : descrs())
    if (descr == "'" + std::string(d.code) + "'") t.dtype = d.dtype, known = true;
  if (!known) throw std::runtime_error(path + ": dtype " + descr + " is not read (little-endian float/int only)");
  const std::string shape = header_field(header, "shape", path);
  for (size_t i = 1; i < shape.size();) {
    const size_t end = shape.find_first_of(",)", i);
    const std::string dim = shape.substr(i, end - i);
    if (dim.find_first_of("0123456789") != std::string::npos) t.shape.push_back(std::stoll(dim));
    i = end + 1;
  }
  t.bytes.resize(static_cast<size_t>(t.size()) * qlstm_edge::dtype_size(t.dtype));
  f.read(reinterpret_cast<char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
  if (!f) throw std::runtime_error(path + ": shorter than its header says");
  return t;
}

inline void save(const std::string& path, const qlstm_edge::Tensor& t) {
  std::string descr;
  for (const auto& d : descrs())
    if (d.dtype == t.dtype) descr = d.code;
  std::string shape = "(";
  for (int64_t d : t.shape) shape += std::to_string(d) + ",";
  if (t.shape.size() > 1) shape.pop_back();
  shape += ")";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  header.append(63 - (10 + header.size()) % 64, ' ');  // the data starts at a multiple of 64 bytes
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                static_cast<unsigned char>(header.size() >> 8)};
  f.write(reinterpret_cast<const char*>(len), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
  if (!f) throw std::runtime_error(path + ": write failed");
}

}  // namespace npy
