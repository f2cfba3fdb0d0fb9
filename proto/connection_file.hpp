// ipcontroller-client.json and ipcontroller-engine.json: the files a controller writes into
// its profile's security/ directory, with exactly ipyparallel 7's fields and key order, so
// that Python engines and clients read ours and we read theirs.
//
// Writing goes through profiles::write_private_file (mode 0600, atomic); this header only
// turns the structs into text and back.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/errors.hpp"

namespace ipcpp::proto {

// The client side of a controller (ipcontroller-client.json).
struct ClientConnectionFile {
  std::string ssh;                            // "[user@]host[:port]" of an SSH gateway, or ""
  std::string interface = "tcp://127.0.0.1";  // transport://ip; a URL is interface + ":" + port
  int registration = 0;
  int control = 0;
  int mux = 0;
  int task = 0;
  std::string task_scheme = "leastload";
  int iopub = 0;
  int notification = 0;
  int broadcast = 0;
  std::string key;                             // HMAC key, used as is; "" = unsigned
  std::optional<std::string> curve_serverkey;  // null unless CURVE is on (not supported)
  std::string location;                        // the controller's host name
  std::string pack = "json";
  std::string unpack = "json";
  std::string signature_scheme = "hmac-sha256";

  // interface + ":" + port, e.g. "tcp://127.0.0.1:48509".
  std::string url(int port) const;
};

// The engine side of a controller (ipcontroller-engine.json).
struct EngineConnectionFile {
  std::string ssh;
  std::string interface = "tcp://127.0.0.1";
  int registration = 0;
  int control = 0;
  int mux = 0;
  int task = 0;
  int iopub = 0;
  int hb_ping = 0;
  int hb_pong = 0;
  std::vector<int> broadcast;  // one port per leaf of the broadcast tree
  std::string key;
  std::optional<std::string> curve_serverkey;
  std::string location;
  std::string pack = "json";
  std::string unpack = "json";
  std::string signature_scheme = "hmac-sha256";

  std::string url(int port) const;
};

// The file's text as ipyparallel writes it: json.dumps(indent=2), keys in its order, ASCII,
// no trailing newline.
std::string to_json_text(const ClientConnectionFile& file);
std::string to_json_text(const EngineConnectionFile& file);

// Parse a file's text. `origin` (usually the path) starts every error reason, which names
// the field: "<origin>: field 'mux' is missing". Errors: kBadJson (not JSON, not an object),
// kBadContent (a missing field, or one of the wrong type or out of range), kUnsupported
// (pack/unpack other than json, an unknown signature scheme, CURVE).
Result<ClientConnectionFile> parse_client_connection_file(std::string_view text,
                                                          std::string_view origin);
Result<EngineConnectionFile> parse_engine_connection_file(std::string_view text,
                                                          std::string_view origin);

// Read and parse; kIo names the path when it cannot be read.
Result<ClientConnectionFile> read_client_connection_file(const std::filesystem::path& path);
Result<EngineConnectionFile> read_engine_connection_file(const std::filesystem::path& path);

// A new key in ipyparallel's form: 8 hex digits, '-', 24 hex digits (random).
std::string new_connection_key();

}  // namespace ipcpp::proto
