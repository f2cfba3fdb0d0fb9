// ipcpp-px: run one command (or a line of code) on a set of engines and print what each one
// wrote, each line prefixed "[engine N] " — like IPython's %px, and like pdsh for a lab's
// machines. The program's main (tools/px_main.cpp) only parses the command line.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <ipcpp/client.hpp>
#include <optional>
#include <string>
#include <vector>

namespace ipcpp::px {

struct PxOptions {
  ClientOptions client;
  // Engine ids to run on; empty: every registered engine. Default: every engine.
  std::vector<std::int64_t> targets;
  // The command. As given it is a shell command, sent as "!COMMAND" (ipcpp engines and
  // Python ipengines both run that with /bin/sh); with `code`, it is sent as it is: a call or
  // lines in the engine's language (Python on ipengine). Default: a shell command.
  std::string command;
  bool code = false;
  // How long to wait for every engine to finish. Default: no limit.
  std::optional<Seconds> timeout;
};

// Parses "all" (or "") into {} and "0,2,5" into ids. Throws std::invalid_argument naming
// the part that is not an engine id.
std::vector<std::int64_t> parse_targets(const std::string& text);

// Runs the command and prints, engine by engine in id order: its stdout lines prefixed
// "[engine N] " to `out`, its stderr lines the same to `err`, then its result value as
// "[engine N] Out: VALUE" (code only), or its error as "[engine N] Ename: evalue" to `err`.
// Returns 0 when every engine succeeded, 1 otherwise. Throws ipcpp::Error when the
// controller cannot be reached or a target is not registered, TimeoutError on timeout.
int run_px(const PxOptions& options, std::ostream& out, std::ostream& err);

}  // namespace ipcpp::px
