// What the command lines of ipcpp's programs share: which profile they work in, read before
// the real parse so that the profile's config file can be given to CLI11, and log levels.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "profiles/profile.hpp"

namespace ipcpp::profiles {

struct ProfileChoice {
  std::string profile = "default";  // --profile NAME
  std::string profile_dir;          // --profile-dir DIR (wins over --profile)
  std::string ipython_dir;          // --ipython-dir DIR

  // The profile chosen: profile_dir if set, else profile_<profile> under the IPython
  // directory. Throws as Profile::named and ipython_dir do.
  Profile resolve() const;
};

// Picks --profile, --profile-dir and --ipython-dir ("--opt value" or "--opt=value") out of a
// command line and ignores everything else.
ProfileChoice scan_profile_options(int argc, char** argv);

// A log level as the programs take it: trace, debug, info, warning (warn), error, critical
// (any case), or ipcontroller's numbers 0, 10, 20, 30, 40, 50. Returns spdlog's level number
// (0 trace ... 5 critical), or nullopt for anything else.
std::optional<int> log_level_from_text(std::string_view text);

}  // namespace ipcpp::profiles
