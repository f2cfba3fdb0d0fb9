// Captures what a task writes to the process's standard output and error file descriptors:
// printf, fprintf(stderr), write(1, ...), and the output of child processes it starts with
// system() or popen(). std::cout and std::cerr are captured separately, a line at a time
// (output_stream.hpp); this is for everything that goes below them, as ipykernel's
// capture_fd_output does for a Python kernel.
//
// File descriptors 1 and 2 become the write ends of two pipes. A reader thread empties the
// pipes as they fill, so a task that writes more than a pipe holds never blocks. Everything it
// reads goes on to the descriptors the process had (a terminal, or the log file ipcpp-cluster
// gave it), as ipykernel does "to capture errors in terminals"; while a task runs, it is also
// kept for the task. The kernel thread takes what a task wrote when the task ends (take()).
// Both threads read the pipes only under the mutex, so what take() returns is everything
// written before it was called; each writes its copy to the original descriptors after letting
// go of the mutex.
//
// A crash must not lose its last words ("terminate called after throwing ...", a sanitizer's
// report) in a pipe that dies with the process: on SIGABRT, SIGSEGV, SIGBUS, SIGFPE and SIGILL a
// handler gives the process its descriptors back, copies what the pipes still hold to them, and
// lets the signal take its previous course. One capture per process.
#pragma once

#include <cstddef>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

namespace ipcpp::engine {

class FdOutputCapture {
 public:
  // What one task may leave per stream before the rest is dropped (and the drop noted in its
  // output): a task printing without end must not exhaust the engine's memory.
  static constexpr std::size_t kMaxPending = std::size_t{64} << 20;

  // Redirects file descriptors 1 and 2 and starts the reader thread. Throws std::system_error
  // when a pipe, a descriptor or the thread cannot be made, or a capture exists already
  // (nothing is redirected then).
  FdOutputCapture();
  // Stops the reader thread and gives the process its descriptors back; what is still in the
  // pipes goes to them.
  ~FdOutputCapture();
  FdOutputCapture(const FdOutputCapture&) = delete;
  FdOutputCapture& operator=(const FdOutputCapture&) = delete;

  // The process's own standard error from before the redirection, for a logger whose lines
  // must not end up in a task's output. Owned by this object; valid until it is destroyed.
  std::FILE* original_stderr() const { return original_err_file_; }

  // From now on what the pipes deliver belongs to the running task.
  void begin();
  // Flushes C stdio's buffers, reads what is in the pipes and hands over what the task wrote
  // since begin() or the last take().
  struct Output {
    std::string out;
    std::string err;
  };
  Output take();
  // From now on what the pipes deliver goes to the original descriptors again.
  void end();

 private:
  struct Stream {
    int target = -1;    // 1 or 2
    int original = -1;  // a duplicate of what `target` was
    int read_end = -1;
    std::string pending;
    std::size_t dropped = 0;
  };
  void start();
  void run();
  // Reads what `s`'s pipe holds, up to about `limit` bytes, without blocking; mu_ held. Keeps
  // it for the task while one runs, and appends all of it to `tee`, which the caller writes to
  // the original descriptor once the mutex is released. False when the pipe has no writer left.
  bool drain_locked(Stream& s, std::string& tee, std::size_t limit);
  // What the reader thread reads per stream before it lets go of the mutex.
  static constexpr std::size_t kReadBatch = std::size_t{1} << 20;
  static std::string take_text(Stream& s);

  std::mutex mu_;
  bool capturing_ = false;
  Stream streams_[2];
  int stop_read_ = -1;
  int stop_write_ = -1;
  std::FILE* original_err_file_ = nullptr;
  std::thread reader_;
};

}  // namespace ipcpp::engine
