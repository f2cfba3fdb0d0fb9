#include "proto/connection_file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "proto/json_struct.hpp"
#include "proto/session.hpp"
#include "proto/signer.hpp"

namespace ipcpp::proto {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// Reads fields of one connection file, keeping the first problem found.
class FieldReader {
 public:
  FieldReader(const json& j, std::string_view origin) : j_(j), origin_(origin) {}

  void string(const char* name, std::string& out, bool required = true) {
    const json* v = find(name, required);
    if (v == nullptr) return;
    if (!v->is_string()) return wrong(name, "a string", *v);
    out = v->get<std::string>();
  }

  void optional_string(const char* name, std::optional<std::string>& out) {
    const json* v = find(name, false);
    if (v == nullptr || v->is_null()) return;
    if (!v->is_string()) return wrong(name, "a string or null", *v);
    out = v->get<std::string>();
  }

  void port(const char* name, int& out) {
    const json* v = find(name, true);
    if (v == nullptr) return;
    if (!is_port(*v)) return wrong(name, "a port number (1-65535)", *v);
    out = v->get<int>();
  }

  void port_list(const char* name, std::vector<int>& out) {
    const json* v = find(name, true);
    if (v == nullptr) return;
    if (!v->is_array() || v->empty()) return wrong(name, "a non-empty list of port numbers", *v);
    for (const auto& p : *v) {
      if (!is_port(p)) return wrong(name, "a non-empty list of port numbers", *v);
      out.push_back(p.get<int>());
    }
  }

  void fail(Errc code, const std::string& what) {
    if (!error_) error_ = Error{code, std::string(origin_) + ": " + what};
  }

  const std::optional<Error>& error() const { return error_; }

 private:
  static bool is_port(const json& v) {
    return v.is_number_integer() && v.get<long long>() >= 1 && v.get<long long>() <= 65535;
  }

  const json* find(const char* name, bool required) {
    if (error_) return nullptr;
    const auto it = j_.find(name);
    if (it == j_.end()) {
      if (required) fail(Errc::kBadContent, std::string("field '") + name + "' is missing");
      return nullptr;
    }
    return &*it;
  }

  void wrong(const char* name, const char* expected, const json& got) {
    std::string shown = got.dump();
    if (shown.size() > 40) shown = shown.substr(0, 37) + "...";
    fail(Errc::kBadContent, std::string("field '") + name + "' must be " + expected + ", got " +
                                shown + " (" + got.type_name() + ")");
  }

  const json& j_;
  std::string_view origin_;
  std::optional<Error> error_;
};

Result<json> parse_object(std::string_view text, std::string_view origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    return Error{Errc::kBadJson, std::string(origin) +
                                     ": not a valid JSON connection file: " + json_error_reason(e)};
  }
  if (!j.is_object()) {
    return Error{
        Errc::kBadJson,
        std::string(origin) + ": a connection file must be a JSON object, got " + j.type_name()};
  }
  return j;
}

// The checks every connection file shares: serialization, signature scheme, CURVE, interface.
template <class File>
void check_common(FieldReader& r, const File& f) {
  if (r.error()) return;
  if (f.interface.find("://") == std::string::npos) {
    r.fail(Errc::kBadContent,
           "field 'interface' must look like transport://address, got \"" + f.interface + "\"");
  } else if (f.pack != "json") {
    r.fail(Errc::kUnsupported, "field 'pack' is \"" + f.pack + "\": only json is supported");
  } else if (f.unpack != "json") {
    r.fail(Errc::kUnsupported, "field 'unpack' is \"" + f.unpack + "\": only json is supported");
  } else if (auto s = Signer::create(f.signature_scheme, ""); !s) {
    r.fail(Errc::kUnsupported, "field 'signature_scheme': " + s.error().reason);
  } else if (f.curve_serverkey && !f.curve_serverkey->empty()) {
    r.fail(Errc::kUnsupported,
           "field 'curve_serverkey' is set: CURVE encryption is not supported by ipcpp");
  }
}

// Both files start with ssh, interface, registration, control, mux, task and end with key,
// curve_serverkey, location, pack, unpack, signature_scheme; what lies between differs.
template <class File>
void read_head(FieldReader& r, File& f) {
  r.string("ssh", f.ssh, /*required=*/false);
  r.string("interface", f.interface);
  r.port("registration", f.registration);
  r.port("control", f.control);
  r.port("mux", f.mux);
  r.port("task", f.task);
}

template <class File>
void read_tail(FieldReader& r, File& f) {
  r.string("key", f.key);
  r.optional_string("curve_serverkey", f.curve_serverkey);
  r.string("location", f.location, /*required=*/false);
  r.string("pack", f.pack);
  r.string("unpack", f.unpack);
  r.string("signature_scheme", f.signature_scheme);
}

Result<std::string> slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error{Errc::kIo,
                 path.string() + ": cannot read connection file: " + std::strerror(errno)};
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string dump(const ordered_json& j) {
  return j.dump(2, ' ', /*ensure_ascii=*/true);
}

ordered_json nullable(const std::optional<std::string>& s) {
  return s ? ordered_json(*s) : ordered_json(nullptr);
}

template <class File>
void write_head(ordered_json& j, const File& f) {
  j["ssh"] = f.ssh;
  j["interface"] = f.interface;
  j["registration"] = f.registration;
  j["control"] = f.control;
  j["mux"] = f.mux;
  j["task"] = f.task;
}

template <class File>
void write_tail(ordered_json& j, const File& f) {
  j["key"] = f.key;
  j["curve_serverkey"] = nullable(f.curve_serverkey);
  j["location"] = f.location;
  j["pack"] = f.pack;
  j["unpack"] = f.unpack;
  j["signature_scheme"] = f.signature_scheme;
}

}  // namespace

std::string ClientConnectionFile::url(int port) const {
  return interface + ":" + std::to_string(port);
}
std::string EngineConnectionFile::url(int port) const {
  return interface + ":" + std::to_string(port);
}

std::string to_json_text(const ClientConnectionFile& f) {
  ordered_json j;
  write_head(j, f);
  j["task_scheme"] = f.task_scheme;
  j["iopub"] = f.iopub;
  j["notification"] = f.notification;
  j["broadcast"] = f.broadcast;
  write_tail(j, f);
  return dump(j);
}

std::string to_json_text(const EngineConnectionFile& f) {
  ordered_json j;
  write_head(j, f);
  j["iopub"] = f.iopub;
  j["hb_ping"] = f.hb_ping;
  j["hb_pong"] = f.hb_pong;
  j["broadcast"] = f.broadcast;
  write_tail(j, f);
  return dump(j);
}

Result<ClientConnectionFile> parse_client_connection_file(std::string_view text,
                                                          std::string_view origin) {
  auto j = parse_object(text, origin);
  if (!j) return j.error();
  ClientConnectionFile f;
  FieldReader r(*j, origin);
  read_head(r, f);
  r.string("task_scheme", f.task_scheme);
  r.port("iopub", f.iopub);
  r.port("notification", f.notification);
  r.port("broadcast", f.broadcast);
  read_tail(r, f);
  check_common(r, f);
  if (r.error()) return *r.error();
  return f;
}

Result<EngineConnectionFile> parse_engine_connection_file(std::string_view text,
                                                          std::string_view origin) {
  auto j = parse_object(text, origin);
  if (!j) return j.error();
  EngineConnectionFile f;
  FieldReader r(*j, origin);
  read_head(r, f);
  r.port("iopub", f.iopub);
  r.port("hb_ping", f.hb_ping);
  r.port("hb_pong", f.hb_pong);
  r.port_list("broadcast", f.broadcast);
  read_tail(r, f);
  check_common(r, f);
  if (r.error()) return *r.error();
  return f;
}

Result<ClientConnectionFile> read_client_connection_file(const std::filesystem::path& path) {
  auto text = slurp(path);
  if (!text) return text.error();
  return parse_client_connection_file(*text, path.string());
}

Result<EngineConnectionFile> read_engine_connection_file(const std::filesystem::path& path) {
  auto text = slurp(path);
  if (!text) return text.error();
  return parse_engine_connection_file(*text, path.string());
}

std::string new_connection_key() {
  // A session id has the same shape: 8 hex, '-', 24 hex.
  return new_session_id();
}

}  // namespace ipcpp::proto
