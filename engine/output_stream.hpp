// A std::streambuf that hands what a task writes to a sink: at each newline, when 4 KiB have
// gathered, and on flush. The engine publishes each piece on iopub as a stream message.
#pragma once

#include <functional>
#include <streambuf>
#include <string>
#include <string_view>

namespace ipcpp::engine {

class LineStreamBuf : public std::streambuf {
 public:
  static constexpr std::size_t kChunk = 4096;

  explicit LineStreamBuf(std::function<void(std::string_view)> sink) : sink_(std::move(sink)) {}
  ~LineStreamBuf() override = default;
  LineStreamBuf(const LineStreamBuf&) = delete;
  LineStreamBuf& operator=(const LineStreamBuf&) = delete;

  // Hands over whatever is pending.
  void flush_pending() {
    if (pending_.empty()) return;
    std::string text;
    text.swap(pending_);
    sink_(text);
  }

 protected:
  int_type overflow(int_type ch) override {
    if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
    pending_.push_back(traits_type::to_char_type(ch));
    if (ch == '\n' || pending_.size() >= kChunk) flush_pending();
    return ch;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    pending_.append(s, static_cast<std::size_t>(n));
    if (pending_.size() >= kChunk ||
        std::string_view(s, static_cast<std::size_t>(n)).find('\n') != std::string_view::npos) {
      flush_pending();
    }
    return n;
  }
  int sync() override {
    flush_pending();
    return 0;
  }

 private:
  std::function<void(std::string_view)> sink_;
  std::string pending_;
};

}  // namespace ipcpp::engine
