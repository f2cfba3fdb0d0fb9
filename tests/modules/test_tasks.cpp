// A task library for the engine's end-to-end tests: functions that misbehave on purpose.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <ipcpp/engine.hpp>
#include <stdexcept>
#include <thread>
#include <unistd.h>

IPCPP_TASK(abort_process, "abort_process(): crashes the engine (std::abort)") {
  std::abort();
}

IPCPP_TASK(ignore_cancel,
           "ignore_cancel(seconds, started_file=''): sleeps without looking at cancellation; "
           "first creates started_file, if given, so that a test knows it runs") {
  if (const auto started = args.get<std::string>(1, std::string()); !started.empty()) {
    std::ofstream(started) << "running\n";
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(args.get<double>(0)));
  return ipcpp::Value();
}

IPCPP_TASK(write_std, "write_std(text): writes text to std::cout and std::cerr") {
  const auto text = args.get<std::string>(0);
  std::cout << text << std::endl;
  std::cerr << "err:" << text << std::endl;
  return ipcpp::Value();
}

IPCPP_TASK(write_fds,
           "write_fds(text, copies=1): writes text copies times with printf and fprintf(stderr), "
           "then once more from a child process (system)") {
  const auto text = args.get<std::string>(0);
  const auto copies = args.get<std::int64_t>(1, 1);
  for (std::int64_t i = 0; i < copies; ++i) {
    std::printf("%s\n", text.c_str());
    std::fprintf(stderr, "err:%s\n", text.c_str());
  }
  if (std::system(("echo child:" + text).c_str()) != 0) throw std::runtime_error("echo failed");
  return ipcpp::Value();
}

IPCPP_TASK(last_words, "last_words(text): writes text to stderr (fd 2), then std::abort()") {
  const auto text = args.get<std::string>(0) + "\n";
  (void)!::write(2, text.data(), text.size());
  std::abort();
}

IPCPP_TASK(throw_runtime, "throw_runtime(message): throws std::runtime_error") {
  throw std::runtime_error(args.get<std::string>(0));
}

IPCPP_TASK(engine_id, "engine_id(): the engine's id, from its task context") {
  return ctx.engine_id();
}
