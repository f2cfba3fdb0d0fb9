// HMAC signatures over the four signed frames of a message (OpenSSL).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "proto/errors.hpp"

namespace zmq {
class message_t;
}

namespace ipcpp::proto {

struct WireMessage;

// Signs and checks messages with one key and one scheme ("hmac-<digest>", e.g. hmac-sha256,
// the default of ipyparallel; any digest OpenSSL knows is accepted). With an empty key it
// signs nothing (empty signature frame) and accepts everything, as jupyter_client does.
// Not thread-safe: each thread keeps its own Signer (copies are independent).
class Signer {
 public:
  // Returns kUnsupported for a scheme that is not "hmac-<digest known to OpenSSL>".
  static Result<Signer> create(std::string_view scheme, std::string key);

  Signer(const Signer& other);
  Signer& operator=(const Signer& other);
  Signer(Signer&&) noexcept;
  Signer& operator=(Signer&&) noexcept;
  ~Signer();

  bool enabled() const { return !key_.empty(); }
  const std::string& scheme() const { return scheme_; }
  // Length of a signature in hex characters (64 for sha256).
  std::size_t hex_size() const { return hex_size_; }

  // The lowercase hex HMAC of header, parent_header, metadata and content (exactly those
  // bytes, in that order). Empty when signing is disabled.
  std::string sign(const zmq::message_t& header, const zmq::message_t& parent_header,
                   const zmq::message_t& metadata, const zmq::message_t& content);
  std::string sign(const WireMessage& message);

  // Checks message.signature against the frames, in constant time. Returns kUnsigned,
  // kMalformedSignature or kBadSignature, or ok. Always ok when signing is disabled.
  Status verify(const WireMessage& message);

 private:
  struct Impl;
  Signer(std::string scheme, std::string key, std::unique_ptr<Impl> impl, std::size_t hex_size);

  std::string scheme_;
  std::string key_;
  std::unique_ptr<Impl> impl_;
  std::size_t hex_size_ = 0;
};

}  // namespace ipcpp::proto
