// The command-line options every example client takes: which controller to use (a profile, a
// profile directory or a client connection file), how many engines to wait for, and how long.
#pragma once

#include <cstddef>
#include <ipcpp/client.hpp>
#include <string>

#include <CLI/CLI.hpp>

namespace examples {

struct ExampleOptions {
  std::string profile = "default";
  std::string profile_dir;
  std::string file;
  std::string cluster_id;
  std::size_t engines = 4;  // wait for this many engines before starting
  double timeout = 60;      // seconds: for the engines, and for each result

  ipcpp::ClientOptions client() const {
    ipcpp::ClientOptions o;
    o.profile = profile;
    o.profile_dir = profile_dir;
    o.connection_file = file;
    o.cluster_id = cluster_id;
    o.timeout = ipcpp::Seconds(timeout);
    return o;
  }
};

inline void add_example_options(CLI::App& app, ExampleOptions& o) {
  app.add_option("--profile", o.profile, "Profile name (default: default)")->type_name("NAME");
  app.add_option("--profile-dir", o.profile_dir, "The profile directory")->type_name("DIR");
  app.add_option("--file,-f", o.file, "The controller's client connection file")->type_name("PATH");
  app.add_option("--cluster-id", o.cluster_id, "The controller's cluster id")->type_name("ID");
  app.add_option("--engines,-n", o.engines, "Engines to wait for (default: 4)");
  app.add_option("--timeout", o.timeout, "Seconds to wait for engines and results (default: 60)");
}

// JSON as Python prints lists and dicts: ", " and ": " between items (not inside strings).
inline std::string python_style(const nlohmann::json& j) {
  const std::string compact = j.dump();
  std::string out;
  out.reserve(compact.size() + compact.size() / 4);
  bool in_string = false;
  for (std::size_t i = 0; i < compact.size(); ++i) {
    const char c = compact[i];
    out += c;
    if (in_string) {
      if (c == '\\' && i + 1 < compact.size()) {
        out += compact[++i];
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == ',' || c == ':') {
      out += ' ';
    }
  }
  return out;
}

// Connects and waits for the engines, saying so on stderr.
inline ipcpp::Client connect(const ExampleOptions& o) {
  ipcpp::Client rc(o.client());
  rc.wait_for_engines(o.engines, ipcpp::Seconds(o.timeout));
  return rc;
}

}  // namespace examples
