// Reading one field of a JSON object without parsing it: what a relay or a scheduler needs to
// decide (a msg_type, a msg_id) costs a scan of the frame, with no allocation.
//
//   auto type = peek_string(header_text, "msg_type");
//   if (type.found() && type.value == "status") ...     // else parse the frame as usual
//
// Only the object's top level is searched; nested objects and arrays are skipped whole.
#pragma once

#include <span>
#include <string_view>

namespace ipcpp::proto {

struct Peeked {
  enum class Status {
    kFound,    // the key is there and its value is a string without escapes: `value`
    kAbsent,   // the text is a JSON object without the key at its top level
    kUnknown,  // anything else (not an object, malformed, a non-string value, an escaped
               // string or key): parse the text to know
  };
  Status status = Status::kUnknown;
  std::string_view value;  // the string's characters, between the quotes (a view into the text)

  bool found() const { return status == Status::kFound; }
};

Peeked peek_string(std::string_view object, std::string_view key);

// The raw JSON text of the value of `key` at the object's top level, whatever its kind:
// `true`, `12`, `null`, `[]`, `"ok"` (quotes and escapes kept), `{"a": 1}`. kFound with that
// text, kAbsent, or kUnknown when the text is not an object as far as the scan can tell.
Peeked peek_raw(std::string_view object, std::string_view key);

// A value that peek_raw found, read as peek_string reads it: kFound with the characters of a
// string without escapes, kUnknown for any other value; kAbsent and kUnknown pass through.
Peeked as_string(const Peeked& raw);

// Several keys in one scan of the object: out[i] is what peek_string(object, keys[i]) (or
// peek_raw) answers. `out` has at least keys.size() elements.
void peek_strings(std::string_view object, std::span<const std::string_view> keys,
                  std::span<Peeked> out);
void peek_raw(std::string_view object, std::span<const std::string_view> keys,
              std::span<Peeked> out);

}  // namespace ipcpp::proto
