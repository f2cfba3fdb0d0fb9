#include "proto/session.hpp"

#include <array>
#include <cstdlib>
#include <stdexcept>
#include <unistd.h>

#include <openssl/rand.h>

#include "proto/clock.hpp"

namespace ipcpp::proto {
namespace {

using nlohmann::json;

zmq::message_t frame_of(const std::string& text) {
  return zmq::message_t(text.data(), text.size());
}

std::string dump(const json& j) {
  // Compact; invalid UTF-8 in a string is replaced rather than thrown on.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Appends `text` as a JSON string. Returns false (appending nothing useful) when it has bytes
// above 0x7f: those go through nlohmann, which checks the UTF-8.
bool append_ascii_json_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) return false;
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      out.append("\\u00");
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return true;
}

// The header as compact JSON, written directly (it is built for every message sent).
std::string header_text(const Header& h) {
  std::string out;
  out.reserve(64 + h.msg_id.size() + h.msg_type.size() + h.username.size() + h.session.size() +
              h.date.size() + h.version.size());
  const std::pair<const char*, const std::string*> fields[] = {
      {"{\"date\":", &h.date},         {",\"msg_id\":", &h.msg_id},
      {",\"msg_type\":", &h.msg_type}, {",\"session\":", &h.session},
      {",\"username\":", &h.username}, {",\"version\":", &h.version}};
  for (const auto& [key, value] : fields) {
    out.append(key);
    if (!append_ascii_json_string(out, *value)) return dump(json(h));
  }
  out.push_back('}');
  return out;
}

// nlohmann's what() starts with "[json.exception.parse_error.101] "; keep the readable part.
std::string readable(const json::exception& e) {
  std::string_view what = e.what();
  if (const auto pos = what.find("] "); pos != std::string_view::npos && what.front() == '[') {
    what.remove_prefix(pos + 2);
  }
  return std::string(what);
}

Result<json> parse_dict(const zmq::message_t& frame, const char* name) {
  json j;
  try {
    j = json::parse(frame.data<char>(), frame.data<char>() + frame.size());
  } catch (const json::parse_error& e) {
    return Error{Errc::kBadJson, std::string(name) + " frame is not valid JSON: " + readable(e)};
  }
  if (!j.is_object()) {
    return Error{Errc::kBadJson, std::string(name) + " frame is JSON but not an object (" +
                                     std::string(j.type_name()) + ")"};
  }
  return j;
}

std::string default_username() {
  const char* user = std::getenv("USER");
  return user != nullptr && *user != '\0' ? user : "username";
}

}  // namespace

void to_json(json& j, const Header& h) {
  j = json{{"msg_id", h.msg_id},   {"msg_type", h.msg_type}, {"username", h.username},
           {"session", h.session}, {"date", h.date},         {"version", h.version}};
}

void from_json(const json& j, Header& h) {
  j.at("msg_id").get_to(h.msg_id);
  j.at("msg_type").get_to(h.msg_type);
  auto optional_string = [&j](const char* key, std::string& out) {
    if (const auto it = j.find(key); it != j.end() && !it->is_null()) it->get_to(out);
  };
  optional_string("username", h.username);
  optional_string("session", h.session);
  optional_string("date", h.date);
  h.version.clear();
  optional_string("version", h.version);
}

std::string Message::parent_msg_id() const {
  if (const auto it = parent_header.find("msg_id"); it != parent_header.end() && it->is_string()) {
    return it->get<std::string>();
  }
  return {};
}

std::string new_session_id() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw std::runtime_error("OpenSSL could not produce random bytes for a session id");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  id.reserve(33);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4) id.push_back('-');
    id.push_back(kHex[bytes[i] >> 4]);
    id.push_back(kHex[bytes[i] & 0xF]);
  }
  return id;
}

Session::Session(SessionOptions options)
    : signer_([&] {
        auto s = Signer::create(options.signature_scheme, std::move(options.key));
        if (!s) throw std::invalid_argument(s.error().reason);
        return std::move(s).value();
      }()),
      id_(options.session_id.empty() ? new_session_id() : std::move(options.session_id)),
      username_(options.username.empty() ? default_username() : std::move(options.username)),
      msg_id_prefix_(options.msg_id_prefix.empty() ? id_ + "_" + std::to_string(::getpid()) + "_"
                                                   : std::move(options.msg_id_prefix)),
      history_size_(options.digest_history_size) {
  // dump() of a string: its JSON text, quotes included, escaped as nlohmann does.
  const std::string prefix = dump(json(msg_id_prefix_));
  header_msg_id_start_ = ",\"msg_id\":" + prefix.substr(0, prefix.size() - 1);
  header_end_ = ",\"session\":" + dump(json(id_)) + ",\"username\":" + dump(json(username_)) +
                ",\"version\":" + dump(json(kProtocolVersion)) + "}";
}

std::string Session::new_header_text(std::string_view msg_type) {
  std::string out;
  out.reserve(48 + header_msg_id_start_.size() + msg_type.size() + header_end_.size());
  out.append("{\"date\":\"");
  out.append(format_timestamp(now()));
  out.push_back('"');
  out.append(header_msg_id_start_);
  out.append(std::to_string(++counter_));
  out.append("\",\"msg_type\":");
  if (!append_ascii_json_string(out, msg_type)) {
    // Not plain ASCII: the general path, which checks the UTF-8.
    --counter_;
    return header_text(make_header(msg_type));
  }
  out.append(header_end_);
  return out;
}

Header Session::make_header(std::string_view msg_type) {
  Header h;
  h.msg_id = msg_id_prefix_ + std::to_string(++counter_);
  h.msg_type = std::string(msg_type);
  h.username = username_;
  h.session = id_;
  h.date = format_timestamp(now());
  return h;
}

void Session::sign(WireMessage& wire) {
  wire.signature = frame_of(signer_.sign(wire));
}

std::vector<zmq::message_t> Session::serialize(Message&& m) {
  WireMessage wire;
  wire.identities = std::move(m.identities);
  wire.header = frame_of(header_text(m.header));
  if (m.raw_parent_header.size() > 0) {
    wire.parent_header.copy(m.raw_parent_header);  // shared, not copied
  } else {
    wire.parent_header =
        frame_of(dump(m.parent_header.is_null() ? json::object() : m.parent_header));
  }
  wire.metadata = frame_of(dump(m.metadata.is_null() ? json::object() : m.metadata));
  wire.content = frame_of(dump(m.content.is_null() ? json::object() : m.content));
  wire.buffers = std::move(m.buffers);
  sign(wire);
  return join(std::move(wire));
}

std::vector<zmq::message_t> Session::build(std::vector<zmq::message_t> identities,
                                           std::string_view msg_type, const json& content,
                                           const json& parent, const json& metadata,
                                           std::vector<zmq::message_t> buffers) {
  Message m;
  m.identities = std::move(identities);
  m.header = make_header(msg_type);
  m.parent_header = parent;
  m.metadata = metadata;
  m.content = content;
  m.buffers = std::move(buffers);
  return serialize(std::move(m));
}

std::vector<zmq::message_t> Session::build(std::vector<zmq::message_t> identities,
                                           std::string_view msg_type, const json& content,
                                           zmq::message_t& parent_frame, const json& metadata,
                                           std::vector<zmq::message_t> buffers) {
  Message m;
  m.identities = std::move(identities);
  m.header = make_header(msg_type);
  m.raw_parent_header.copy(parent_frame);
  m.metadata = metadata;
  m.content = content;
  m.buffers = std::move(buffers);
  return serialize(std::move(m));
}

std::vector<zmq::message_t> Session::build_text(std::vector<zmq::message_t> identities,
                                                std::string_view msg_type, std::string_view content,
                                                zmq::message_t& parent_frame,
                                                std::string_view metadata,
                                                std::vector<zmq::message_t> buffers) {
  WireMessage wire;
  wire.identities = std::move(identities);
  wire.header = frame_of(new_header_text(msg_type));
  if (parent_frame.size() > 0) {
    wire.parent_header.copy(parent_frame);  // shared, not copied
  } else {
    wire.parent_header = zmq::message_t("{}", 2);
  }
  wire.metadata = zmq::message_t(metadata.data(), metadata.size());
  wire.content = zmq::message_t(content.data(), content.size());
  wire.buffers = std::move(buffers);
  sign(wire);
  return join(std::move(wire));
}

std::uint32_t Session::seen_hash(std::string_view signature) {
  // Signatures are HMAC digests (verified before they get here): their first bytes are as
  // good a hash as all of them.
  return static_cast<std::uint32_t>(std::hash<std::string_view>{}(signature.substr(0, 16)));
}

bool Session::remember(std::string_view signature) {
  if (history_size_ == 0 || signature.empty()) return true;
  if (seen_ring_.empty()) {
    seen_ring_.resize(history_size_);
    seen_ring_hash_.resize(history_size_);
    std::size_t capacity = 2;
    while (capacity < 2 * history_size_)
      capacity *= 2;
    seen_table_.assign(capacity, 0);
  }
  const std::size_t mask = seen_table_.size() - 1;
  auto hash_of = [](std::uint64_t entry) { return static_cast<std::uint32_t>(entry >> 32); };
  auto position_of = [](std::uint64_t entry) { return static_cast<std::uint32_t>(entry); };
  const std::uint32_t hash = seen_hash(signature);
  std::size_t i = hash & mask;
  for (; seen_table_[i] != 0; i = (i + 1) & mask) {
    if (hash_of(seen_table_[i]) == hash && seen_ring_[position_of(seen_table_[i]) - 1] == signature)
      return false;
  }
  // Forget the oldest signature, whose ring slot this one takes.
  std::string& slot = seen_ring_[seen_next_];
  if (!slot.empty()) {
    std::size_t hole = seen_ring_hash_[seen_next_] & mask;
    while (position_of(seen_table_[hole]) != seen_next_ + 1)
      hole = (hole + 1) & mask;
    // Backward-shift deletion: pull later entries of the probe run into the hole when their
    // home position allows it, so that lookups never stop early at a false gap.
    seen_table_[hole] = 0;
    for (std::size_t j = (hole + 1) & mask; seen_table_[j] != 0; j = (j + 1) & mask) {
      const std::size_t home = hash_of(seen_table_[j]) & mask;
      const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
      if (stays) continue;
      seen_table_[hole] = seen_table_[j];
      seen_table_[j] = 0;
      hole = j;
    }
    // The slot freed above may be where this signature belongs now.
    i = hash & mask;
    while (seen_table_[i] != 0)
      i = (i + 1) & mask;
  }
  slot.assign(signature);
  seen_ring_hash_[seen_next_] = hash;
  seen_table_[i] = (static_cast<std::uint64_t>(hash) << 32) | (seen_next_ + 1);
  seen_next_ = (seen_next_ + 1) % history_size_;
  return true;
}

Result<WireMessage> Session::authenticate(std::vector<zmq::message_t>&& frames) {
  auto wire = split(std::move(frames));
  if (!wire) return wire.error();
  if (auto status = signer_.verify(*wire); !status) return status.error();
  if (signer_.enabled() && !remember(wire->signature.to_string_view())) {
    return Error{Errc::kDuplicateSignature,
                 "duplicate signature: this signed message was received before (a replay)"};
  }
  return wire;
}

Result<Message> Session::decode(std::vector<zmq::message_t>&& frames) {
  auto wire = authenticate(std::move(frames));
  if (!wire) return wire.error();
  return parse(std::move(wire).value());
}

Result<Message> Session::parse(WireMessage&& wire) {
  Message m;
  auto header = parse_dict(wire.header, "header");
  if (!header) return header.error();
  try {
    m.header = header->get<Header>();
  } catch (const json::exception& e) {
    return Error{Errc::kBadHeader, "header is not a message header: " + readable(e)};
  }
  auto parent = parse_dict(wire.parent_header, "parent_header");
  if (!parent) return parent.error();
  auto metadata = parse_dict(wire.metadata, "metadata");
  if (!metadata) return metadata.error();
  auto content = parse_dict(wire.content, "content");
  if (!content) return content.error();
  m.identities = std::move(wire.identities);
  m.raw_header = std::move(wire.header);
  m.parent_header = std::move(parent).value();
  m.metadata = std::move(metadata).value();
  m.content = std::move(content).value();
  m.buffers = std::move(wire.buffers);
  return m;
}

}  // namespace ipcpp::proto
