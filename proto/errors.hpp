// Peer errors as values.
//
// Everything that arrives from a peer (a message, a connection file) is decoded into a
// Result<T>: either the value, or an Error with a code a program can switch on and a reason
// a person can read. A poll loop logs the reason, counts the code and goes on; nothing that
// a peer sends can throw through it or crash it.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ipcpp::proto {

// Why a peer's input was refused. Each code has its own reason text (Error::reason).
enum class Errc {
  kMissingDelimiter,    // no <IDS|MSG> frame
  kTruncated,           // fewer than the 5 frames (signature + 4 dicts) after the delimiter
  kUnsigned,            // a key is set but the signature frame is empty
  kMalformedSignature,  // the signature frame is not a hex digest of the expected length
  kBadSignature,        // the HMAC does not match: altered frames or another key
  kDuplicateSignature,  // this exact signed message was received before (a replay)
  kBadJson,             // a dict frame is not valid UTF-8 JSON, or not a JSON object
  kBadHeader,           // the header lacks a required field or has one of the wrong type
  kBadContent,          // the content, metadata or a buffer does not have the expected shape
  kUnsupported,         // a valid message or file asking for something we do not implement
  kIo,                  // a file could not be read
};

// A short stable name for the code, e.g. "bad-signature" (for logs and counters).
std::string_view errc_name(Errc code);

struct Error {
  Errc code;
  std::string reason;  // one readable sentence, never containing the key
};

// Either a T or an Error. Check ok() before value(); value() on an error is a programming
// error (it throws std::bad_variant_access).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return value(); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// A Result with no value: success, or an Error.
struct Status {
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_{Errc::kIo, {}};
  bool ok_ = true;
};

}  // namespace ipcpp::proto
