// Connection files interoperate with Debian's ipyparallel 7.1: the real /usr/bin/ipcontroller,
// IPEngine's loader and ipyparallel.Client, as real processes on 127.0.0.1.
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "profiles/profile.hpp"
#include "profiles/secure_file.hpp"
#include "proto/connection_file.hpp"
#include "support/files.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ipcpp::proto;
using ipcpp::test::Process;
using ipcpp::test::ProcessOptions;
using nlohmann::json;
using namespace std::chrono_literals;

using ipcpp::test::mode_of;
using ipcpp::test::read_text;

namespace {

// A complete JSON file (ipcontroller writes in place, so a reader may see half of it).
bool complete_json(const fs::path& p) {
  return fs::exists(p) && json::accept(read_text(p));
}

std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

// The real ipcontroller, kept out of the user's ~/.ipython.
Process start_ipcontroller(const ipcpp::test::TempDir& tmp, const fs::path& profile_dir,
                           std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {"/usr/bin/ipcontroller", "--profile-dir=" + profile_dir.string(),
                                   "--ip=127.0.0.1", "--log-level=WARN"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  ProcessOptions options;
  options.env["IPYTHONDIR"] = (tmp.path() / "ipython").string();
  options.env["HOME"] = tmp.path().string();
  return Process(std::move(argv), options);
}

// n distinct free ports on 127.0.0.1, as the OS hands them out.
std::vector<int> free_ports(std::size_t n) {
  zmq::context_t ctx;
  std::vector<zmq::socket_t> holders;
  std::vector<int> ports;
  for (std::size_t i = 0; i < n; ++i) {
    holders.emplace_back(ctx, zmq::socket_type::router);
    holders.back().set(zmq::sockopt::linger, 0);
    holders.back().bind("tcp://127.0.0.1:*");
    const std::string ep = holders.back().get(zmq::sockopt::last_endpoint);
    ports.push_back(std::stoi(ep.substr(ep.rfind(':') + 1)));
  }
  return ports;
}

ipcpp::test::RunResult python_load(const std::string& mode, const fs::path& file,
                                   const ipcpp::test::TempDir& tmp) {
  ProcessOptions options;
  options.env["IPYTHONDIR"] = (tmp.path() / "ipython").string();
  options.env["HOME"] = tmp.path().string();
  return ipcpp::test::run(
      {IPCPP_REFERENCE_PYTHON, std::string(IPCPP_INTEROP_DIR) + "/load_connection_file.py", mode,
       file.string()},
      options, 60s);
}

}  // namespace

TEST_CASE("connection files written by the real ipcontroller are read field for field") {
  ipcpp::test::TempDir tmp;
  const auto profile = ipcpp::profiles::Profile::at(tmp.path() / "profile_ref");
  Process controller = start_ipcontroller(tmp, profile.dir());

  const auto client_path = profile.client_connection_file();
  const auto engine_path = profile.engine_connection_file();
  REQUIRE_MESSAGE(
      ipcpp::test::wait_until(
          [&] { return complete_json(client_path) && complete_json(engine_path); }, 60s),
      "ipcontroller wrote no connection files; its stderr: " << controller.stderr_text());
  const std::string client_text = read_text(client_path);
  const std::string engine_text = read_text(engine_path);
  controller.stop();  // a clean exit removes the files: parse the copies taken above

  auto client = parse_client_connection_file(client_text, client_path.string());
  REQUIRE_MESSAGE(client.ok(), client.error().reason);
  auto engine = parse_engine_connection_file(engine_text, engine_path.string());
  REQUIRE_MESSAGE(engine.ok(), engine.error().reason);

  // Field for field against the file's own JSON.
  const json c = json::parse(client_text);
  CHECK(c.size() == 16);
  CHECK(client->ssh == c["ssh"]);
  CHECK(client->interface == c["interface"]);
  CHECK(client->registration == c["registration"]);
  CHECK(client->control == c["control"]);
  CHECK(client->mux == c["mux"]);
  CHECK(client->task == c["task"]);
  CHECK(client->task_scheme == c["task_scheme"]);
  CHECK(client->iopub == c["iopub"]);
  CHECK(client->notification == c["notification"]);
  CHECK(client->broadcast == c["broadcast"]);
  CHECK(client->key == c["key"]);
  CHECK(c["curve_serverkey"].is_null());
  CHECK_FALSE(client->curve_serverkey.has_value());
  CHECK(client->location == c["location"]);
  CHECK(client->pack == c["pack"]);
  CHECK(client->unpack == c["unpack"]);
  CHECK(client->signature_scheme == c["signature_scheme"]);

  const json e = json::parse(engine_text);
  CHECK(e.size() == 16);
  CHECK(engine->interface == e["interface"]);
  CHECK(engine->registration == e["registration"]);
  CHECK(engine->registration == client->registration);
  CHECK(engine->control == e["control"]);
  CHECK(engine->mux == e["mux"]);
  CHECK(engine->task == e["task"]);
  CHECK(engine->iopub == e["iopub"]);
  CHECK(engine->hb_ping == e["hb_ping"]);
  CHECK(engine->hb_pong == e["hb_pong"]);
  CHECK(engine->broadcast == e["broadcast"].get<std::vector<int>>());
  CHECK(engine->key == e["key"]);
  CHECK(engine->location == e["location"]);
  CHECK(engine->signature_scheme == e["signature_scheme"]);

  // Written back by us, the files are byte for byte what ipcontroller wrote.
  CHECK(to_json_text(*client) == client_text);
  CHECK(to_json_text(*engine) == engine_text);
}

TEST_CASE("connection files written by ipcpp are loaded by ipyparallel's own code") {
  ipcpp::test::TempDir tmp;
  const auto profile = ipcpp::profiles::Profile::at(tmp.path() / "profile_ours");
  profile.create();

  const auto ports = free_ports(15);
  ClientConnectionFile client;
  client.interface = "tcp://127.0.0.1";
  client.registration = ports[0];
  client.control = ports[1];
  client.mux = ports[2];
  client.task = ports[3];
  client.iopub = ports[4];
  client.notification = ports[5];
  client.broadcast = ports[6];
  client.key = new_connection_key();
  client.location = hostname();

  EngineConnectionFile engine;
  engine.interface = client.interface;
  engine.registration = client.registration;
  engine.control = ports[7];
  engine.mux = ports[8];
  engine.task = ports[9];
  engine.iopub = ports[10];
  engine.hb_ping = ports[11];
  engine.hb_pong = ports[12];
  engine.broadcast = {ports[13], ports[14]};
  engine.key = client.key;
  engine.location = client.location;

  const std::string client_text = to_json_text(client);
  const std::string engine_text = to_json_text(engine);
  ipcpp::profiles::write_private_file(profile.client_connection_file(), client_text);
  ipcpp::profiles::write_private_file(profile.engine_connection_file(), engine_text);
  CHECK(mode_of(profile.client_connection_file()) == 0600);
  CHECK(mode_of(profile.engine_connection_file()) == 0600);
  CHECK(mode_of(profile.security_dir()) == 0700);

  SUBCASE("IPEngine.load_connector_file reads our engine file") {
    const auto r = python_load("engine", profile.engine_connection_file(), tmp);
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    const json loaded = json::parse(r.out);
    CHECK(loaded["registration_url"] == "tcp://127.0.0.1:" + std::to_string(client.registration));
    CHECK(loaded["key"] == client.key);
    CHECK(loaded["signature_scheme"] == "hmac-sha256");
    CHECK(loaded["packer"] == "json");
    CHECK(loaded["location"] == client.location);
  }

  SUBCASE("ipcontroller --reuse serves our files and a Client connects with ours") {
    // The Client reads a copy, so what it loads is our text even if ipcontroller rewrites.
    const auto our_copy = tmp.path() / "client-copy.json";
    ipcpp::profiles::write_private_file(our_copy, client_text);

    Process controller = start_ipcontroller(tmp, profile.dir(), {"--reuse"});
    const auto r = python_load("client", our_copy, tmp);
    INFO("client stderr: " << r.err);
    INFO("controller stderr: " << controller.stderr_text());
    REQUIRE(r.exit_code == 0);
    const json loaded = json::parse(r.out);
    CHECK(loaded["ids"] == json::array());
    CHECK(loaded["task_scheme"] == "leastload");
    // ipcontroller's loader accepted both files and kept our ports and key.
    CHECK(read_text(profile.client_connection_file()) == client_text);
    CHECK(read_text(profile.engine_connection_file()) == engine_text);
    controller.stop();
  }
}
