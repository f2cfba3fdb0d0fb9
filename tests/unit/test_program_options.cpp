// profiles/program_options.hpp: the profile and log-level options every program shares.
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "profiles/program_options.hpp"

namespace {

ipcpp::profiles::ProfileChoice scan(std::vector<std::string> args) {
  static char program[] = "program";
  std::vector<char*> argv{program};
  for (auto& a : args)
    argv.push_back(a.data());
  return ipcpp::profiles::scan_profile_options(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

TEST_CASE("scan_profile_options picks the profile options out of any command line") {
  const auto plain = scan({"--ping", "500", "--reuse"});
  CHECK(plain.profile == "default");
  CHECK(plain.profile_dir.empty());
  const auto both = scan({"--profile=lab", "--x", "--ipython-dir", "/r", "--profile-dir", "/p"});
  CHECK(both.profile == "lab");
  CHECK(both.ipython_dir == "/r");
  CHECK(both.profile_dir == "/p");
  CHECK(both.resolve().dir() == "/p");  // --profile-dir wins
  CHECK(scan({"--profile", "lab", "--ipython-dir=/r"}).resolve().dir() == "/r/profile_lab");
  CHECK(scan({"--profile"}).profile == "default");  // no value: left to the real parse
}

TEST_CASE("log levels are names or ipcontroller's numbers") {
  using ipcpp::profiles::log_level_from_text;
  CHECK(log_level_from_text("trace") == 0);
  CHECK(log_level_from_text("DEBUG") == 1);
  CHECK(log_level_from_text("10") == 1);
  CHECK(log_level_from_text("info") == 2);
  CHECK(log_level_from_text("Warning") == 3);
  CHECK(log_level_from_text("warn") == 3);
  CHECK(log_level_from_text("30") == 3);
  CHECK(log_level_from_text("error") == 4);
  CHECK(log_level_from_text("50") == 5);
  CHECK_FALSE(log_level_from_text("loud").has_value());
  CHECK_FALSE(log_level_from_text("15").has_value());
}
