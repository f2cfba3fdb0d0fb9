// Reading one field of a JSON object without parsing it: what a relay or a scheduler needs to
// decide (a msg_type, a msg_id) costs a scan of the frame, with no allocation.
//
//   auto type = peek_string(header_text, "msg_type");
//   if (type.found() && type.value == "status") ...     // else parse the frame as usual
//
// Only the object's top level is searched; nested objects and arrays are skipped whole.
#pragma once

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

}  // namespace ipcpp::proto
