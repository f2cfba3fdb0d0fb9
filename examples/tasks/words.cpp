// count_words: the word frequencies of a text, the map step of the word-count examples of
// IPython parallel (wordfreq.py) and of every map-reduce tutorial since.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ipcpp/engine.hpp"
#include "ipcpp/value.hpp"

#include "task_args.hpp"

namespace {

// Letters and digits (ASCII), apostrophes, and every byte of a multi-byte UTF-8 character, so
// that "café" and "cat’s" stay one word.
bool is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '\'' ||
         c >= 0x80;
}

char ascii_lower(unsigned char c) {
  return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
}

// Adds the word text[begin, end) to `counts`, lower-cased, apostrophes at either end dropped
// (so that quotes do not stick to words); nothing if only apostrophes are left.
void add_word(std::string_view text, std::size_t begin, std::size_t end,
              std::map<std::string, std::int64_t>& counts) {
  while (begin < end && text[begin] == '\'')
    ++begin;
  while (end > begin && text[end - 1] == '\'')
    --end;
  if (begin == end) return;
  std::string word;
  word.reserve(end - begin);
  for (std::size_t i = begin; i < end; ++i) {
    word.push_back(ascii_lower(static_cast<unsigned char>(text[i])));
  }
  ++counts[word];
}

// The offset of the first byte of `text` that is not part of valid UTF-8, or npos.
std::size_t invalid_utf8_at(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    std::size_t length = 0;
    std::uint32_t code = 0;
    if (lead < 0x80) {
      length = 1;
      code = lead;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
      code = lead & 0x1Fu;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      code = lead & 0x0Fu;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      code = lead & 0x07u;
    } else {
      return i;
    }
    if (text.size() - i < length) return i;
    for (std::size_t j = 1; j < length; ++j) {
      const auto next = static_cast<unsigned char>(text[i + j]);
      if ((next & 0xC0u) != 0x80u) return i;
      code = (code << 6) | (next & 0x3Fu);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF.
    const bool overlong = (length == 3 && code < 0x800) || (length == 4 && code < 0x10000);
    if (overlong || (code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) return i;
    i += length;
  }
  return std::string_view::npos;
}

}  // namespace

IPCPP_TASK(count_words,
           "count_words(text) or count_words(path=...): {word: count} of the lower-cased words "
           "(letters, digits, apostrophes) of the text or of the file") {
  constexpr const char* kTask = "count_words";
  args.expect(0, 1);
  ipcpp::examples::expect_keywords(args, kTask, {"text", "path"});
  const ipcpp::Value* text_value = ipcpp::examples::find_param(args, kTask, 0, "text");
  const ipcpp::Value* path_value = args.find("path");
  if ((text_value == nullptr) == (path_value == nullptr)) {
    throw ipcpp::TaskError("TypeError",
                           "count_words() takes a text or path=..., exactly one of them");
  }
  std::string text;
  if (text_value != nullptr) {
    text = ipcpp::examples::to_text(*text_value, kTask, "text");
  } else {
    const std::string path = ipcpp::examples::to_text(*path_value, kTask, "path");
    text = ipcpp::examples::read_text_file(path);
    // The words become JSON keys, which must be UTF-8.
    const std::size_t bad = invalid_utf8_at(text);
    if (bad != std::string_view::npos) {
      throw ipcpp::TaskError("UnicodeDecodeError",
                             path + ": not UTF-8 text (byte " + std::to_string(bad) + ")");
    }
  }

  ipcpp::examples::CancellationCheck cancellation(ctx);
  std::map<std::string, std::int64_t> counts;
  std::size_t begin = 0;  // start of the current word, if the previous byte was in one
  bool in_word = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool word_byte = is_word_byte(static_cast<unsigned char>(text[i]));
    if (word_byte && !in_word) begin = i;
    if (!word_byte && in_word) add_word(text, begin, i, counts);
    in_word = word_byte;
    cancellation.tick();
  }
  if (in_word) add_word(text, begin, text.size(), counts);
  return nlohmann::json(counts);
}
