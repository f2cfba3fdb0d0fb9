// Connection files (proto/connection_file.hpp). The fixtures in tests/data were written by
// /usr/bin/ipcontroller 7.1; tests/interop checks against a live one.
#include <fstream>
#include <sstream>

#include <doctest/doctest.h>

#include "proto/connection_file.hpp"

using namespace ipcpp::proto;
using nlohmann::json;

namespace {

std::string fixture(const char* name) {
  std::ifstream in(std::string(IPCPP_TEST_DATA_DIR) + "/" + name, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The client fixture with one field changed (or removed, when value is discarded).
std::string client_with(const char* field, const json& value) {
  json j = json::parse(fixture("ipcontroller-client.json"));
  if (value.is_discarded()) {
    j.erase(field);
  } else {
    j[field] = value;
  }
  return j.dump(2);
}

}  // namespace

TEST_CASE("a client file written by ipcontroller is read field for field") {
  auto f = parse_client_connection_file(fixture("ipcontroller-client.json"), "client.json");
  REQUIRE_MESSAGE(f.ok(), f.error().reason);
  CHECK(f->ssh == "");
  CHECK(f->interface == "tcp://127.0.0.1");
  CHECK(f->registration == 48509);
  CHECK(f->control == 60275);
  CHECK(f->mux == 42497);
  CHECK(f->task == 51925);
  CHECK(f->task_scheme == "leastload");
  CHECK(f->iopub == 47709);
  CHECK(f->notification == 59121);
  CHECK(f->broadcast == 45097);
  CHECK(f->key == "59807942-e8a9f55b0320832d5149c3df");
  CHECK_FALSE(f->curve_serverkey.has_value());
  CHECK(f->location == "vm");
  CHECK(f->pack == "json");
  CHECK(f->unpack == "json");
  CHECK(f->signature_scheme == "hmac-sha256");
  CHECK(f->url(f->registration) == "tcp://127.0.0.1:48509");
}

TEST_CASE("an engine file written by ipcontroller is read field for field") {
  auto f = parse_engine_connection_file(fixture("ipcontroller-engine.json"), "engine.json");
  REQUIRE_MESSAGE(f.ok(), f.error().reason);
  CHECK(f->registration == 48509);
  CHECK(f->control == 33377);
  CHECK(f->mux == 34167);
  CHECK(f->task == 53081);
  CHECK(f->iopub == 39579);
  CHECK(f->hb_ping == 51989);
  CHECK(f->hb_pong == 49357);
  CHECK(f->broadcast == std::vector<int>{38039, 33527});
  CHECK(f->key == "59807942-e8a9f55b0320832d5149c3df");
}

TEST_CASE("our files are byte for byte what ipcontroller writes") {
  auto c = parse_client_connection_file(fixture("ipcontroller-client.json"), "c");
  auto e = parse_engine_connection_file(fixture("ipcontroller-engine.json"), "e");
  REQUIRE(c.ok());
  REQUIRE(e.ok());
  CHECK(to_json_text(*c) == fixture("ipcontroller-client.json"));
  CHECK(to_json_text(*e) == fixture("ipcontroller-engine.json"));
}

TEST_CASE("a bad connection file names the file and the field") {
  auto reason = [](const std::string& text) {
    auto f = parse_client_connection_file(text, "/p/security/ipcontroller-client.json");
    REQUIRE_FALSE(f.ok());
    return f.error().reason;
  };
  CHECK(reason(client_with("mux", json(json::value_t::discarded))) ==
        "/p/security/ipcontroller-client.json: field 'mux' is missing");
  CHECK(reason(client_with("key", json(json::value_t::discarded))) ==
        "/p/security/ipcontroller-client.json: field 'key' is missing");
  CHECK(reason(client_with("mux", "42497")) ==
        "/p/security/ipcontroller-client.json: field 'mux' must be a port number (1-65535), got "
        "\"42497\" (string)");
  CHECK(reason(client_with("iopub", 70000)) ==
        "/p/security/ipcontroller-client.json: field 'iopub' must be a port number (1-65535), got "
        "70000 (number)");
  CHECK(reason(client_with("key", 12)) ==
        "/p/security/ipcontroller-client.json: field 'key' must be a string, got 12 (number)");
  CHECK(reason(client_with("interface", "127.0.0.1")) ==
        "/p/security/ipcontroller-client.json: field 'interface' must look like "
        "transport://address, got \"127.0.0.1\"");
  CHECK(reason(client_with("pack", "pickle")) ==
        "/p/security/ipcontroller-client.json: field 'pack' is \"pickle\": only json is supported");
  CHECK(reason(client_with("signature_scheme", "hmac-nosuch")) ==
        "/p/security/ipcontroller-client.json: field 'signature_scheme': signature scheme "
        "'hmac-nosuch' names a digest OpenSSL does not know");
  CHECK(reason(client_with("curve_serverkey", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7")) ==
        "/p/security/ipcontroller-client.json: field 'curve_serverkey' is set: CURVE encryption is "
        "not supported by ipcpp");
  CHECK(reason("{\"ssh\": \"\",\n  \"interface\": }") ==
        "/p/security/ipcontroller-client.json: not a valid JSON connection file: parse error at "
        "line 2, column 16: syntax error while parsing value - unexpected '}'; expected '[', "
        "'{', or a literal");
  CHECK(reason("[1, 2]") ==
        "/p/security/ipcontroller-client.json: a connection file must be a JSON object, got array");
  CHECK(reason("") ==
        "/p/security/ipcontroller-client.json: not a valid JSON connection file: parse error at "
        "line 1, column 1: syntax error while parsing value - unexpected end of input; expected "
        "'[', '{', or a literal");
}

TEST_CASE("the engine file's broadcast field must be a list of ports") {
  json j = json::parse(fixture("ipcontroller-engine.json"));
  j["broadcast"] = 38039;
  auto f = parse_engine_connection_file(j.dump(), "e.json");
  REQUIRE_FALSE(f.ok());
  CHECK(f.error().reason ==
        "e.json: field 'broadcast' must be a non-empty list of port numbers, got 38039 (number)");
}

TEST_CASE("ssh, location and curve_serverkey may be left out") {
  json j = json::parse(fixture("ipcontroller-engine.json"));
  j.erase("ssh");
  j.erase("location");
  j.erase("curve_serverkey");
  CHECK(parse_engine_connection_file(j.dump(), "e").ok());
}

TEST_CASE("a file that cannot be read gives an error naming it") {
  auto f = read_client_connection_file("/nonexistent/ipcontroller-client.json");
  REQUIRE_FALSE(f.ok());
  CHECK(f.error().code == Errc::kIo);
  CHECK(f.error().reason ==
        "/nonexistent/ipcontroller-client.json: cannot read connection file: No such file or "
        "directory");
}

TEST_CASE("new keys have ipyparallel's form") {
  const auto k = new_connection_key();
  CHECK(k.size() == 33);
  CHECK(k[8] == '-');
  CHECK(k != new_connection_key());
}
