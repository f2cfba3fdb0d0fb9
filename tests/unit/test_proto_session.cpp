// Signing, authentication and the rejection of bad messages (proto/session.hpp, wire.hpp).
#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "proto/clock.hpp"
#include "proto/session.hpp"
#include "proto/wire.hpp"
#include "support/frames.hpp"

using ipcpp::proto::Errc;
using ipcpp::proto::Session;
using ipcpp::proto::SessionOptions;
using nlohmann::json;

namespace {

constexpr const char* kKey = "59807942-e8a9f55b0320832d5149c3df";

using ipcpp::test::frame;
std::vector<zmq::message_t> copy(const std::vector<zmq::message_t>& frames) {
  return ipcpp::test::copy_frames(frames);
}

std::vector<zmq::message_t> sample(Session& s) {
  std::vector<zmq::message_t> ids;
  ids.push_back(frame("engine-uuid"));
  std::vector<zmq::message_t> bufs;
  bufs.push_back(frame(std::string_view("raw\0bytes", 9)));  // binary, NUL inside
  return s.build(std::move(ids), "execute_request", json{{"code", "x = getpid()"}}, json::object(),
                 json{{"targets", json::array()}}, std::move(bufs));
}

Session keyed(const std::string& key = kKey) {
  return Session(SessionOptions{.key = key});
}

}  // namespace

TEST_CASE("a message built by a session is accepted by a session with the same key") {
  Session sender = keyed();
  Session receiver = keyed();
  auto frames = sample(sender);
  REQUIRE(frames.size() == 8);  // ident, delimiter, signature, 4 dicts, 1 buffer
  CHECK(frames[1].to_string_view() == "<IDS|MSG>");
  CHECK(frames[2].size() == 64);

  auto m = receiver.decode(std::move(frames));
  REQUIRE_MESSAGE(m.ok(), m.error().reason);
  CHECK(m->identities.size() == 1);
  CHECK(m->identities[0].to_string_view() == "engine-uuid");
  CHECK(m->header.msg_type == "execute_request");
  CHECK(m->header.session == sender.id());
  CHECK(m->header.version == "5.3");
  CHECK(m->header.msg_id.rfind(sender.id() + "_", 0) == 0);
  CHECK(ipcpp::proto::parse_timestamp(m->header.date).has_value());
  CHECK(m->content == json{{"code", "x = getpid()"}});
  CHECK(m->metadata == json{{"targets", json::array()}});
  CHECK(m->parent_header == json::object());
  REQUIRE(m->buffers.size() == 1);
  CHECK(m->buffers[0].size() == 9);
}

TEST_CASE("build_text sends given JSON texts with a header like build's") {
  SessionOptions o{.key = kKey};
  o.username = "ünïcode \"user\"";  // escaped once, when the session is made
  Session sender(o);
  Session receiver = keyed();
  Session client = keyed();
  auto request = receiver.decode(sample(client));
  REQUIRE(request.ok());
  std::vector<zmq::message_t> ids;
  ids.push_back(frame("client"));
  std::vector<zmq::message_t> bufs;
  bufs.push_back(frame("payload"));
  auto frames = sender.build_text(std::move(ids), "apply_reply", R"({"status":"ok"})",
                                  request->raw_header, R"({"engine":"e"})", std::move(bufs));
  auto m = receiver.decode(std::move(frames));
  REQUIRE_MESSAGE(m.ok(), m.error().reason);
  CHECK(m->identities[0].to_string_view() == "client");
  CHECK(m->header.msg_type == "apply_reply");
  CHECK(m->header.session == sender.id());
  CHECK(m->header.username == o.username);
  CHECK(m->header.version == "5.3");
  CHECK(m->header.msg_id.rfind(sender.id() + "_", 0) == 0);
  CHECK(ipcpp::proto::parse_timestamp(m->header.date).has_value());
  CHECK(m->parent_header["msg_id"] == request->header.msg_id);
  CHECK(m->content == json{{"status", "ok"}});
  CHECK(m->metadata == json{{"engine", "e"}});
  REQUIRE(m->buffers.size() == 1);
  CHECK(m->buffers[0].to_string_view() == "payload");
  // The counter is the one make_header uses: ids stay unique across both ways.
  const auto next = sender.make_header("x").msg_id;
  CHECK(next != m->header.msg_id);
  // Without a parent frame the parent header is {}.
  zmq::message_t none;
  auto orphan = receiver.decode(sender.build_text({}, "status", "{}", none, "{}"));
  REQUIRE(orphan.ok());
  CHECK(orphan->parent_header == json::object());
  // A message type that is not plain ASCII takes the general path and stays valid JSON.
  auto odd = receiver.decode(sender.build_text({}, "stätus", "{}", none, "{}"));
  REQUIRE_MESSAGE(odd.ok(), odd.error().reason);
  CHECK(odd->header.msg_type == "stätus");
}

TEST_CASE("message ids are unique and session ids have jupyter_client's form") {
  Session s;
  CHECK(s.id().size() == 33);
  CHECK(s.id()[8] == '-');
  CHECK(s.make_header("a").msg_id != s.make_header("a").msg_id);
  CHECK(Session().id() != s.id());
}

TEST_CASE("bad messages are rejected with a distinct, readable reason") {
  Session sender = keyed();
  const auto good = sample(sender);

  SUBCASE("a flipped byte in a signed frame") {
    auto frames = copy(good);
    std::string content(frames[6].to_string_view());
    content[2] ^= 0x01;
    frames[6] = frame(content);
    auto r = keyed().decode(std::move(frames));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kBadSignature);
    CHECK(r.error().reason ==
          "invalid signature: the hmac-sha256 of the header, parent_header, metadata and content "
          "frames does not match (the message was altered, or signed with another key)");
  }
  SUBCASE("a flipped byte in the signature") {
    auto frames = copy(good);
    std::string sig(frames[2].to_string_view());
    sig[10] = sig[10] == 'a' ? 'b' : 'a';
    frames[2] = frame(sig);
    auto r = keyed().decode(std::move(frames));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kBadSignature);
  }
  SUBCASE("a wrong key") {
    auto r = keyed("another-key").decode(copy(good));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kBadSignature);
  }
  SUBCASE("a missing signature") {
    auto frames = copy(good);
    frames[2] = zmq::message_t();
    auto r = keyed().decode(std::move(frames));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kUnsigned);
    CHECK(r.error().reason == "unsigned message: the signature frame is empty but a key is set");
  }
  SUBCASE("a signature that is not hex") {
    auto frames = copy(good);
    frames[2] = frame(std::string(64, 'z'));
    auto r = keyed().decode(std::move(frames));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kMalformedSignature);
    CHECK(r.error().reason == "malformed signature: the signature frame is not hexadecimal");
  }
  SUBCASE("a signature of the wrong length") {
    auto frames = copy(good);
    frames[2] = frame("abc");
    auto r = keyed().decode(std::move(frames));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kMalformedSignature);
    CHECK(r.error().reason ==
          "malformed signature: 3 bytes where a hmac-sha256 signature has 64 hex digits");
  }
  SUBCASE("a replayed message") {
    Session receiver = keyed();
    REQUIRE(receiver.decode(copy(good)).ok());
    auto r = receiver.decode(copy(good));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kDuplicateSignature);
    CHECK(r.error().reason ==
          "duplicate signature: this signed message was received before (a replay)");
  }
  SUBCASE("a missing delimiter") {
    auto frames = copy(good);
    frames.erase(frames.begin() + 1);
    auto r = keyed().decode(std::move(frames));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kMissingDelimiter);
    CHECK(r.error().reason == "no <IDS|MSG> delimiter frame among the 7 frames");
  }
  SUBCASE("a truncated message") {
    auto frames = copy(good);
    frames.resize(5);  // ident, delimiter, signature, header, parent
    auto r = keyed().decode(std::move(frames));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kTruncated);
    CHECK(r.error().reason ==
          "truncated message: 3 frames after the <IDS|MSG> delimiter, at least 5 needed "
          "(signature, header, parent_header, metadata, content)");
  }
  SUBCASE("an empty message") {
    auto r = keyed().decode({});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kMissingDelimiter);
  }
  SUBCASE("a header that is not JSON, correctly signed") {
    auto wire = ipcpp::proto::split(copy(good));
    REQUIRE(wire.ok());
    wire->header = frame("{\"msg_id\": not json");
    sender.sign(*wire);
    auto r = keyed().decode(ipcpp::proto::join(std::move(wire).value()));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kBadJson);
    CHECK(r.error().reason ==
          "header frame is not valid JSON: parse error at line 1, column 13: syntax error while "
          "parsing value - invalid literal; last read: '\"msg_id\": no'");
  }
  SUBCASE("a header without msg_type") {
    auto wire = ipcpp::proto::split(copy(good));
    REQUIRE(wire.ok());
    wire->header = frame(R"({"msg_id": "a", "session": "b"})");
    sender.sign(*wire);
    auto r = keyed().decode(ipcpp::proto::join(std::move(wire).value()));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kBadHeader);
    CHECK(r.error().reason == "header is not a message header: key 'msg_type' not found");
  }
  SUBCASE("content that is a JSON list, not an object") {
    auto wire = ipcpp::proto::split(copy(good));
    REQUIRE(wire.ok());
    wire->content = frame("[1, 2]");
    sender.sign(*wire);
    auto r = keyed().decode(ipcpp::proto::join(std::move(wire).value()));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::kBadJson);
    CHECK(r.error().reason == "content frame is JSON but not an object (array)");
  }
}

TEST_CASE("each rejection has its own code name") {
  CHECK(ipcpp::proto::errc_name(Errc::kBadSignature) == "bad-signature");
  CHECK(ipcpp::proto::errc_name(Errc::kDuplicateSignature) == "duplicate-signature");
  CHECK(ipcpp::proto::errc_name(Errc::kTruncated) == "truncated");
}

TEST_CASE("the replay memory is bounded and forgets the oldest signatures first") {
  Session sender = keyed();
  Session receiver(SessionOptions{.key = kKey, .digest_history_size = 2});
  const auto first = sample(sender);
  REQUIRE(receiver.decode(copy(first)).ok());
  REQUIRE(receiver.decode(sample(sender)).ok());
  CHECK_FALSE(receiver.decode(copy(first)).ok());  // still remembered
  REQUIRE(receiver.decode(sample(sender)).ok());   // pushes `first` out
  CHECK(receiver.decode(copy(first)).ok());
}

TEST_CASE("the replay memory remembers exactly the last N signatures, whatever the order") {
  // Against a plain model, with many messages through a small memory, and replays of recent,
  // just-forgotten and old messages mixed in: lookups must survive every removal.
  constexpr std::size_t kHistory = 37;
  Session sender = keyed();
  Session receiver(SessionOptions{.key = kKey, .digest_history_size = kHistory});
  std::vector<std::vector<zmq::message_t>> sent;
  std::deque<std::size_t> remembered;  // indices into sent, oldest first
  unsigned state = 12345;
  auto next_random = [&state] { return state = state * 1103515245u + 12345u; };
  for (int step = 0; step < 3000; ++step) {
    const bool replay = !sent.empty() && next_random() % 3 == 0;
    const std::size_t index = replay ? next_random() % sent.size() : sent.size();
    if (!replay) sent.push_back(sample(sender));
    const bool known = std::find(remembered.begin(), remembered.end(), index) != remembered.end();
    auto r = receiver.decode(copy(sent[index]));
    REQUIRE_MESSAGE(r.ok() == !known, "step ", step, " message ", index);
    if (!known) {
      remembered.push_back(index);
      if (remembered.size() > kHistory) remembered.pop_front();
    }
  }
}

TEST_CASE("without a key nothing is signed and every signature is accepted") {
  Session sender;
  auto frames = sample(sender);
  CHECK(frames[2].size() == 0);
  CHECK(Session().decode(std::move(frames)).ok());
  // A signed message is accepted by an unkeyed session, as jupyter_client does.
  Session signer = keyed();
  CHECK(Session().decode(sample(signer)).ok());
}

TEST_CASE("an unknown signature scheme is refused when the session is made") {
  CHECK_THROWS_WITH_AS(Session(SessionOptions{.key = "k", .signature_scheme = "md5"}),
                       "signature scheme 'md5' is not supported (expected hmac-<digest>, e.g. "
                       "hmac-sha256)",
                       std::invalid_argument);
  CHECK_THROWS_AS(Session(SessionOptions{.key = "k", .signature_scheme = "hmac-nosuch"}),
                  std::invalid_argument);
  CHECK_NOTHROW(Session(SessionOptions{.key = "k", .signature_scheme = "hmac-sha512"}));
}

TEST_CASE("authenticate passes frames on untouched for relays") {
  Session sender = keyed();
  Session relay = keyed();
  auto frames = sample(sender);
  const std::string content(frames[6].to_string_view());
  auto wire = relay.authenticate(std::move(frames));
  REQUIRE(wire.ok());
  CHECK(wire->content.to_string_view() == content);
  auto out = ipcpp::proto::join(std::move(wire).value());
  CHECK(out.size() == 8);
  CHECK(keyed().decode(std::move(out)).ok());
}
