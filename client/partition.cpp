#include "client/partition.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

#include "proto/large_buffer.hpp"

namespace ipcpp::detail {
namespace {

using nlohmann::json;

std::size_t row_bytes(const Array& a) {
  std::size_t n = dtype_size(a.dtype());
  for (std::size_t i = 1; i < a.shape().size(); ++i)
    n *= a.shape()[i];
  return n;
}

// Appends the items of one piece to `items`.
void append_items(const Value& piece, std::vector<Value>& items) {
  if (piece.is_array()) {
    const Array& a = piece.array();
    const std::size_t n = a.shape().empty() ? 0 : a.shape()[0];
    for (std::size_t i = 0; i < n; ++i) {
      if (a.shape().size() == 1) {
        items.emplace_back(a.element(i));
      } else {
        // Row i of an n-D array: an (n-1)-D array sharing the bytes.
        const std::size_t row = row_bytes(a);
        std::vector<std::size_t> shape(a.shape().begin() + 1, a.shape().end());
        items.emplace_back(Array(a.dtype(), std::move(shape),
                                 Bytes(a.bytes().owner(), a.bytes().data() + i * row, row)));
      }
    }
    return;
  }
  if (piece.json().is_null()) return;
  for (std::size_t i = 0; i < piece.size(); ++i)
    items.push_back(piece[i]);
}

}  // namespace

std::size_t sequence_length(const Value& seq, const char* what) {
  if (seq.is_array()) {
    const auto& shape = seq.array().shape();
    if (shape.empty()) {
      throw std::invalid_argument(std::string(what) + " is a 0-dimensional array, not a sequence");
    }
    return shape[0];
  }
  if (!seq.json().is_array()) {
    throw std::invalid_argument(std::string(what) + " is not a sequence (a list or an array): " +
                                std::string(seq.json().type_name()));
  }
  return seq.json().size();
}

Value slice(const Value& seq, std::size_t begin, std::size_t end) {
  if (seq.is_array()) {
    const Array& a = seq.array();
    const std::size_t row = row_bytes(a);
    std::vector<std::size_t> shape = a.shape();
    shape[0] = end - begin;
    Bytes bytes(a.bytes().owner(), a.bytes().data() + begin * row, (end - begin) * row);
    return Value(Array(a.dtype(), std::move(shape), std::move(bytes)));
  }
  if (seq.arrays().empty()) {
    const json& j = seq.json();
    return Value(json(j.begin() + static_cast<std::ptrdiff_t>(begin),
                      j.begin() + static_cast<std::ptrdiff_t>(end)));
  }
  std::vector<Value> items;
  items.reserve(end - begin);
  for (std::size_t i = begin; i < end; ++i)
    items.push_back(seq[i]);
  return Value::list(std::move(items));
}

std::vector<std::pair<std::size_t, std::size_t>> partition(std::size_t n, std::size_t q) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  out.reserve(q);
  const std::size_t base = n / q;
  const std::size_t rem = n % q;
  std::size_t begin = 0;
  for (std::size_t p = 0; p < q; ++p) {
    const std::size_t len = base + (p < rem ? 1 : 0);
    out.emplace_back(begin, begin + len);
    begin += len;
  }
  return out;
}

Value concatenate(const std::vector<Value>& pieces) {
  bool all_arrays = !pieces.empty();
  for (const auto& p : pieces) {
    if (!p.is_array() || p.array().shape().empty() ||
        p.array().dtype() != pieces.front().array().dtype() ||
        row_bytes(p.array()) != row_bytes(pieces.front().array()) ||
        p.array().shape().size() != pieces.front().array().shape().size()) {
      all_arrays = false;
      break;
    }
  }
  if (all_arrays) {
    std::size_t rows = 0;
    std::size_t size = 0;
    for (const auto& p : pieces) {
      rows += p.array().shape()[0];
      size += p.array().bytes().size();
    }
    // Every byte is written below: no zero-filling first (a gather of 10^7 doubles spent a
    // tenth of its time filling 80 MB with zeros); a large result reuses the buffer an earlier
    // one freed (proto/large_buffer.hpp).
    std::shared_ptr<std::byte[]> buffer = proto::large_bytes(size);
    std::size_t at = 0;
    for (const auto& p : pieces) {
      const Bytes& b = p.array().bytes();
      if (b.size() > 0) std::memcpy(buffer.get() + at, b.data(), b.size());
      at += b.size();
    }
    std::vector<std::size_t> shape = pieces.front().array().shape();
    shape[0] = rows;
    const std::byte* data = buffer.get();
    return Value(Array(pieces.front().array().dtype(), std::move(shape),
                       Bytes(std::move(buffer), data, size)));
  }
  bool plain = true;
  for (const auto& p : pieces) {
    if (!p.arrays().empty() || !(p.json().is_array() || p.json().is_null())) {
      plain = false;
      break;
    }
  }
  if (plain) {
    json out = json::array();
    for (const auto& p : pieces) {
      if (p.json().is_null()) continue;
      for (const auto& item : p.json())
        out.push_back(item);
    }
    return Value(std::move(out));
  }
  std::vector<Value> items;
  for (const auto& p : pieces) {
    if (!p.is_array() && !p.json().is_array() && !p.json().is_null()) {
      throw std::invalid_argument(std::string("cannot concatenate a ") + p.json().type_name() +
                                  ": gather and map need lists or arrays");
    }
    append_items(p, items);
  }
  return Value::list(std::move(items));
}

}  // namespace ipcpp::detail
