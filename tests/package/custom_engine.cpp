// A custom engine program built against the installed package: its own task, then
// ipcpp-engine's command line. check.sh runs it with --list-functions.
#include <ipcpp/engine.hpp>

IPCPP_TASK(consumer_hello, "consumer_hello(name): a greeting from a custom engine") {
  return "hello, " + args.get<std::string>(0, "world");
}

int main(int argc, char** argv) {
  return ipcpp::engine_main(argc, argv);
}
