// The config-file templates that `ipcpp-profile create` writes into a profile, one per program:
// `ipcpp_<program>.toml`, read by ipcpp-<program> through CLI11's config support (TOML subset).
//
// Each template starts with a comment saying which program reads it and that the command line
// overrides it, then lists every option of that program as a commented-out `# name = default`
// line preceded by a one-line `#` comment describing it. `name` is the long option without its
// dashes (`heartbeat-period = 3000` sets `--heartbeat-period`).
#pragma once

#include <span>
#include <string_view>

namespace ipcpp::profiles {

// Returns the programs that have a config template: "controller", "engine", "cluster", "px".
std::span<const std::string_view> config_programs();

// Returns the template of `program` (one of config_programs()). The text has static storage.
// Throws std::invalid_argument naming `program` if it has no template.
std::string_view config_template(std::string_view program);

}  // namespace ipcpp::profiles
