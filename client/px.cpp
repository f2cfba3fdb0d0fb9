#include "client/px.hpp"

#include <ostream>
#include <sstream>
#include <stdexcept>

namespace ipcpp::px {
namespace {

// Writes `text` line by line, each line prefixed; a last line without '\n' gets one.
void prefixed(std::ostream& os, const std::string& prefix, const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line))
    os << prefix << line << '\n';
}

}  // namespace

std::vector<std::int64_t> parse_targets(const std::string& text) {
  std::vector<std::int64_t> ids;
  if (text.empty() || text == "all") return ids;
  std::istringstream parts(text);
  std::string part;
  while (std::getline(parts, part, ',')) {
    std::size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != part.size() || id < 0) {
      throw std::invalid_argument("'" + part +
                                  "' is not an engine id (use \"all\" or ids such as 0,2)");
    }
    ids.push_back(id);
  }
  return ids;
}

int run_px(const PxOptions& options, std::ostream& out, std::ostream& err) {
  Client client(options.client);
  DirectView view = options.targets.empty() ? client.all() : client[options.targets];
  const std::vector<std::int64_t> ids = view.targets();
  const std::string code = options.code ? options.command : "!" + options.command;
  AsyncResult result = view.execute(code);
  if (!result.wait(options.timeout) || !result.wait_for_output(options.timeout)) {
    throw TimeoutError("not every engine finished within the timeout (" +
                       std::to_string(result.progress()) + " of " + std::to_string(result.size()) +
                       " did)");
  }
  // One execute per engine: request i went to engine ids[i].
  const auto meta = result.metadata();
  int failed = 0;
  for (std::size_t i = 0; i < meta.size(); ++i) {
    const std::string prefix = "[engine " + std::to_string(ids[i]) + "] ";
    prefixed(out, prefix, meta[i].stdout_text);
    prefixed(err, prefix, meta[i].stderr_text);
    if (meta[i].status != "ok") {
      ++failed;
    } else if (options.code && !meta[i].execute_result.is_null()) {
      const auto& data = meta[i].execute_result;
      std::string text = data.contains("text/plain") && data["text/plain"].is_string()
                             ? data["text/plain"].get<std::string>()
                             : data.dump();
      prefixed(out, prefix + "Out: ", text);
    }
  }
  if (failed > 0) {
    try {
      result.get();
    } catch (const CompositeError& e) {
      for (const auto& one : e.errors())
        err << one.what() << '\n';
    } catch (const RemoteError& e) {
      err << e.what() << '\n';
    }
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace ipcpp::px
