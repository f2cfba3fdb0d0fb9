#include "profiles/program_options.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

namespace ipcpp::profiles {

Profile ProfileChoice::resolve() const {
  if (!profile_dir.empty()) return Profile::at(profile_dir);
  return Profile::named(profile, profiles::ipython_dir(ipython_dir));
}

ProfileChoice scan_profile_options(int argc, char** argv) {
  ProfileChoice choice;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto take = [&](std::string_view name, std::string& out) {
      if (arg == name && i + 1 < argc) {
        out = argv[++i];
        return true;
      }
      if (arg.starts_with(name) && arg.size() > name.size() && arg[name.size()] == '=') {
        out = std::string(arg.substr(name.size() + 1));
        return true;
      }
      return false;
    };
    if (take("--profile-dir", choice.profile_dir) || take("--ipython-dir", choice.ipython_dir) ||
        take("--profile", choice.profile)) {
      continue;
    }
  }
  return choice;
}

std::optional<int> log_level_from_text(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static constexpr std::array<std::pair<std::string_view, int>, 13> kLevels = {{
      {"trace", 0},
      {"0", 0},
      {"debug", 1},
      {"10", 1},
      {"info", 2},
      {"20", 2},
      {"warning", 3},
      {"warn", 3},
      {"30", 3},
      {"error", 4},
      {"40", 4},
      {"critical", 5},
      {"50", 5},
  }};
  for (const auto& [name, level] : kLevels) {
    if (lower == name) return level;
  }
  return std::nullopt;
}

}  // namespace ipcpp::profiles
