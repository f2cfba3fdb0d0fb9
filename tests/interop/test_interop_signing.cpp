// Signing interoperates both ways with Debian's jupyter_client (the reference Session):
// a real Python process and real ZeroMQ sockets on 127.0.0.1.
#include <sstream>

#include <doctest/doctest.h>

#include "proto/clock.hpp"
#include "proto/session.hpp"
#include "support/frames.hpp"
#include "support/process.hpp"

using ipcpp::proto::Session;
using ipcpp::proto::SessionOptions;
using ipcpp::test::copy_frame;
using ipcpp::test::Process;
using nlohmann::json;

namespace {

constexpr const char* kKey = "59807942-e8a9f55b0320832d5149c3df";

std::vector<json> lines_of(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

}  // namespace

TEST_CASE("signatures interoperate both ways with jupyter_client's Session") {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);

  Process peer({IPCPP_REFERENCE_PYTHON, std::string(IPCPP_INTEROP_DIR) + "/session_peer.py",
                endpoint, kKey, "5"});

  // 1. Python -> C++: the message jupyter_client signed is accepted by ours.
  router.set(zmq::sockopt::rcvtimeo, 20000);
  auto frames = ipcpp::proto::recv_frames(router);
  REQUIRE_MESSAGE(!frames.empty(),
                  "no message from the Python peer; its stderr: " << peer.stderr_text());
  Session ours(SessionOptions{.key = kKey});
  auto request = ours.decode(std::move(frames));
  REQUIRE_MESSAGE(request.ok(), request.error().reason);
  CHECK(request->msg_type() == "interop_request");
  CHECK(request->header.username == "py");
  CHECK(request->header.version == "5.3");
  CHECK(ipcpp::proto::parse_timestamp(request->header.date).has_value());
  CHECK(request->content ==
        json{{"n", 1}, {"text", "h\u00e9llo \u2713"}, {"list", {1.5, nullptr, true}}});
  CHECK(request->metadata == json{{"from", "python"}});
  REQUIRE(request->buffers.size() == 1);
  CHECK(request->buffers[0].to_string_view() == std::string_view("\x00\x01raw\xff"
                                                                 "bytes",
                                                                 11));
  REQUIRE(request->identities.size() == 1);  // the ROUTER's routing id of the peer

  // 2. C++ -> Python: five replies; jupyter_client must accept exactly the good ones.
  auto identity = [&] {
    std::vector<zmq::message_t> ids;
    ids.push_back(copy_frame(request->identities[0]));
    return ids;
  };
  const json parent = request->header;
  std::vector<zmq::message_t> buffers;
  buffers.emplace_back("\x00\xfe", 2);
  auto good = ours.build(identity(), "interop_reply", json{{"echo", request->content}}, parent,
                         json{{"engine", "cpp"}}, std::move(buffers));
  auto replay = ipcpp::test::copy_frames(good);

  Session wrong_key(SessionOptions{.key = "not-the-key"});
  auto forged = wrong_key.build(identity(), "forged_reply", json::object(), parent);

  auto tampered = ours.build(identity(), "tampered_reply", json{{"amount", 100}}, parent);
  std::string content(tampered[6].to_string_view());  // rid, delim, sig, h, p, m, c
  content.replace(content.find("100"), 3, "900");
  tampered[6] = zmq::message_t(content.data(), content.size());

  auto second = ours.build(identity(), "second_reply", json{{"n", 2}});

  ipcpp::proto::send_frames(router, std::move(good));
  ipcpp::proto::send_frames(router, std::move(forged));
  ipcpp::proto::send_frames(router, std::move(tampered));
  ipcpp::proto::send_frames(router, std::move(replay));
  ipcpp::proto::send_frames(router, std::move(second));

  const auto status = peer.wait_for(std::chrono::seconds(30));
  REQUIRE_MESSAGE(status.has_value(), "the Python peer did not finish");
  INFO("python stderr: " << peer.stderr_text());
  REQUIRE(*status == 0);
  const auto verdicts = lines_of(peer.stdout_text());
  REQUIRE(verdicts.size() == 5);

  const json& accepted = verdicts[0];
  CHECK(accepted["accepted"] == true);
  CHECK(accepted["msg_type"] == "interop_reply");
  CHECK(accepted["session"] == ours.id());
  CHECK(accepted["date_is_datetime"] == true);  // our date parses as a Python datetime
  CHECK(accepted["version"] == "5.3");
  CHECK(accepted["parent_msg_id"] == request->header.msg_id);
  CHECK(accepted["metadata"] == json{{"engine", "cpp"}});
  CHECK(accepted["content"]["echo"] == request->content);
  CHECK(accepted["buffers"] == json::array({"00fe"}));

  CHECK(verdicts[1]["accepted"] == false);  // another key
  CHECK(verdicts[1]["error"].get<std::string>().rfind("ValueError: Invalid Signature", 0) == 0);
  CHECK(verdicts[2]["accepted"] == false);  // altered content
  CHECK(verdicts[2]["error"].get<std::string>().rfind("ValueError: Invalid Signature", 0) == 0);
  CHECK(verdicts[3]["accepted"] == false);  // the same signed bytes again
  CHECK(verdicts[3]["error"].get<std::string>().rfind("ValueError: Duplicate Signature", 0) == 0);
  CHECK(verdicts[4]["accepted"] == true);
  CHECK(verdicts[4]["msg_type"] == "second_reply");
}
