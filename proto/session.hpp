// A Session signs what it sends and authenticates what it receives, like jupyter_client's
// Session: message ids, the session id, header dates, HMAC signatures and replay rejection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "proto/errors.hpp"
#include "proto/message.hpp"
#include "proto/signer.hpp"
#include "proto/wire.hpp"

namespace ipcpp::proto {

struct SessionOptions {
  // HMAC key: the ASCII "key" of the connection file, used as is. Default: "" (no signing;
  // every signature accepted), as jupyter_client.
  std::string key;
  // "hmac-<digest>". Default: "hmac-sha256".
  std::string signature_scheme = "hmac-sha256";
  // This peer's session id; an engine uses its uuid. Default: a new random id in
  // jupyter_client's form, 8 hex digits, '-', 24 hex digits.
  std::string session_id;
  // Default: $USER, else "username".
  std::string username;
  // What message ids start with, before a counter. Default: "<session id>_<pid>_". Two
  // Sessions that share a session id (one process's threads) need different prefixes.
  std::string msg_id_prefix;
  // How many received signatures are remembered to reject replays; the oldest are forgotten
  // first. 0 turns replay rejection off. Default: 65536 (jupyter_client's digest_history_size).
  std::size_t digest_history_size = 65536;
};

// Not thread-safe: give each thread its own Session (each with its own session id, so that
// message ids stay unique).
class Session {
 public:
  // Throws std::invalid_argument when the signature scheme is not supported.
  explicit Session(SessionOptions options = {});
  // Movable, not copyable: the replay memory holds views into its own storage.
  Session(Session&&) noexcept = default;
  Session& operator=(Session&&) noexcept = default;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const std::string& id() const { return id_; }
  const std::string& username() const { return username_; }
  bool signs() const { return signer_.enabled(); }

  // A new header: msg_id "<session>_<pid>_<n>", the date now, version 5.3.
  Header make_header(std::string_view msg_type);

  // Serializes and signs: identities, delimiter, signature, the four dicts as compact JSON,
  // buffers. The message's frames are moved out.
  std::vector<zmq::message_t> serialize(Message&& message);

  // Builds a new message of type msg_type (fresh header) and serializes it.
  // parent is the header of the request being answered, or {}.
  std::vector<zmq::message_t> build(std::vector<zmq::message_t> identities,
                                    std::string_view msg_type, const nlohmann::json& content,
                                    const nlohmann::json& parent = nlohmann::json::object(),
                                    const nlohmann::json& metadata = nlohmann::json::object(),
                                    std::vector<zmq::message_t> buffers = {});

  // The same, with the parent header given as its JSON frame: a received request's
  // Message::raw_header, shared rather than written again (replies and outputs).
  std::vector<zmq::message_t> build(std::vector<zmq::message_t> identities,
                                    std::string_view msg_type, const nlohmann::json& content,
                                    zmq::message_t& parent_frame,
                                    const nlohmann::json& metadata = nlohmann::json::object(),
                                    std::vector<zmq::message_t> buffers = {});

  // The fastest way to send: content and metadata given as their compact JSON text (constant,
  // or written by the caller), the parent as a received header frame (shared), the header
  // written directly. For the engine's statuses and replies, which it sends for every task.
  std::vector<zmq::message_t> build_text(std::vector<zmq::message_t> identities,
                                         std::string_view msg_type, std::string_view content,
                                         zmq::message_t& parent_frame, std::string_view metadata,
                                         std::vector<zmq::message_t> buffers = {});

  // Splits received frames and checks them: delimiter, frame count, signature, replay.
  // Nothing is parsed, so a relay can authenticate and forward. On success the signature is
  // remembered; receiving the same signed frames again gives kDuplicateSignature.
  Result<WireMessage> authenticate(std::vector<zmq::message_t>&& frames);

  // authenticate() then parse(): the whole decode of a received message.
  Result<Message> decode(std::vector<zmq::message_t>&& frames);

  // Parses the four dicts of an authenticated message. Returns kBadJson when a frame is not a
  // JSON object, kBadHeader when the header lacks msg_id or msg_type.
  static Result<Message> parse(WireMessage&& wire);

  // Signs the four dict frames of `wire` into its signature frame.
  void sign(WireMessage& wire);

 private:
  bool remember(std::string_view signature);
  // A new header's JSON text, as make_header() would give it.
  std::string new_header_text(std::string_view msg_type);

  Signer signer_;
  std::string id_;
  std::string username_;
  std::string msg_id_prefix_;
  unsigned long long counter_ = 0;
  // The constant parts of every header's text, JSON-escaped once: `"msg_id":"<prefix>` and
  // `,"session":...,"username":...,"version":"5.3"}`.
  std::string header_msg_id_start_;
  std::string header_end_;
  std::size_t history_size_;
  // The last history_size_ signatures: a ring of strings (their storage is reused) with each
  // one's 32-bit hash beside it, and, for the lookup, an open-addressing table with linear
  // probing, at most half full. A table entry holds the hash (high half) and the ring position
  // + 1 (low half; 0: empty), so probing and deletion read only the table: a ring string is
  // read when the hashes are equal. Nothing is allocated once all three are made: this runs
  // for every message.
  static std::uint32_t seen_hash(std::string_view signature);
  std::vector<std::string> seen_ring_;
  std::vector<std::uint32_t> seen_ring_hash_;
  std::size_t seen_next_ = 0;
  std::vector<std::uint64_t> seen_table_;
};

// A new random id in jupyter_client's session format: 8 hex digits, '-', 24 hex digits.
std::string new_session_id();

}  // namespace ipcpp::proto
