// A task library built against the installed package; check.sh loads it into the custom
// engine with --load.
#include <ipcpp/engine.hpp>

IPCPP_TASK(consumer_twice, "consumer_twice(x): 2 * x") {
  return 2 * args.get<double>(0);
}
