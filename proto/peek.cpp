#include "proto/peek.hpp"

#include <cstddef>

namespace ipcpp::proto {
namespace {

class Scanner {
 public:
  explicit Scanner(std::string_view text) : t_(text) {}

  void skip_space() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r'))
      ++i_;
  }
  bool take(char c) {
    skip_space();
    if (i_ < t_.size() && t_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool at(char c) {
    skip_space();
    return i_ < t_.size() && t_[i_] == c;
  }
  // A string starting at the current '"': its characters, and whether it has escapes.
  bool string(std::string_view& out, bool& escaped) {
    if (!take('"')) return false;
    const std::size_t start = i_;
    escaped = false;
    while (i_ < t_.size()) {
      const char c = t_[i_];
      if (c == '"') {
        out = t_.substr(start, i_ - start);
        ++i_;
        return true;
      }
      if (c == '\\') {
        escaped = true;
        i_ += 2;
        continue;
      }
      ++i_;
    }
    return false;
  }
  std::size_t position() const { return i_; }
  std::string_view text(std::size_t from, std::size_t to) const {
    return t_.substr(from, to - from);
  }

  // Skips any value: a string, an object or array (nesting counted), a number or a literal.
  bool skip_value() {
    skip_space();
    if (i_ >= t_.size()) return false;
    const char c = t_[i_];
    if (c == '"') {
      std::string_view s;
      bool escaped = false;
      return string(s, escaped);
    }
    if (c == '{' || c == '[') {
      int depth = 0;
      while (i_ < t_.size()) {
        const char d = t_[i_];
        if (d == '"') {
          std::string_view s;
          bool escaped = false;
          if (!string(s, escaped)) return false;
          continue;
        }
        if (d == '{' || d == '[') ++depth;
        if (d == '}' || d == ']') {
          --depth;
          if (depth == 0) {
            ++i_;
            return true;
          }
        }
        ++i_;
      }
      return false;
    }
    const std::size_t start = i_;
    while (i_ < t_.size() && t_[i_] != ',' && t_[i_] != '}' && t_[i_] != ']' && t_[i_] != ' ' &&
           t_[i_] != '\t' && t_[i_] != '\n' && t_[i_] != '\r')
      ++i_;
    return i_ > start;
  }

 private:
  std::string_view t_;
  std::size_t i_ = 0;
};

}  // namespace

void peek_raw(std::string_view object, std::span<const std::string_view> keys,
              std::span<Peeked> out) {
  // Until the scan says otherwise, every key is unknown; a key found stays found even when
  // the text turns out malformed after it, as a scan for that key alone would have stopped
  // there.
  for (std::size_t k = 0; k < keys.size(); ++k)
    out[k] = Peeked{Peeked::Status::kUnknown, {}};
  std::size_t left = keys.size();
  const auto absent_rest = [&] {
    for (std::size_t k = 0; k < keys.size(); ++k) {
      if (out[k].status == Peeked::Status::kUnknown) out[k].status = Peeked::Status::kAbsent;
    }
  };
  Scanner s(object);
  if (!s.take('{')) return;
  if (s.take('}')) return absent_rest();
  while (left > 0) {
    std::string_view name;
    bool escaped = false;
    if (!s.string(name, escaped) || escaped || !s.take(':')) return;
    s.skip_space();
    const std::size_t start = s.position();
    if (!s.skip_value()) return;
    for (std::size_t k = 0; k < keys.size(); ++k) {
      if (out[k].status == Peeked::Status::kUnknown && name == keys[k]) {
        out[k] = Peeked{Peeked::Status::kFound, s.text(start, s.position())};
        --left;
        break;
      }
    }
    if (left == 0 || s.take(',')) continue;
    if (s.take('}')) return absent_rest();
    return;
  }
}

Peeked peek_raw(std::string_view object, std::string_view key) {
  Peeked out;
  peek_raw(object, std::span<const std::string_view>(&key, 1), std::span<Peeked>(&out, 1));
  return out;
}

Peeked as_string(const Peeked& raw) {
  if (!raw.found()) return raw;
  const std::string_view v = raw.value;
  // A string without escapes: its characters are the value, as they stand in the text.
  if (v.size() < 2 || v.front() != '"' || v.find('\\') != std::string_view::npos) {
    return {Peeked::Status::kUnknown, {}};
  }
  return {Peeked::Status::kFound, v.substr(1, v.size() - 2)};
}

void peek_strings(std::string_view object, std::span<const std::string_view> keys,
                  std::span<Peeked> out) {
  peek_raw(object, keys, out);
  for (std::size_t k = 0; k < keys.size(); ++k)
    out[k] = as_string(out[k]);
}

Peeked peek_string(std::string_view object, std::string_view key) {
  return as_string(peek_raw(object, key));
}

}  // namespace ipcpp::proto
