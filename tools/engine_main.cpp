// ipcpp-engine: one engine of an ipcpp (or ipyparallel) cluster. Everything is in the engine
// library, so that a custom engine program with its own IPCPP_TASK functions has the same
// command line: see include/ipcpp/engine.hpp.
#include "ipcpp/engine.hpp"

int main(int argc, char** argv) {
  return ipcpp::engine_main(argc, argv);
}
