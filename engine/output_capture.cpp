#include "engine/output_capture.hpp"

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <fcntl.h>
#include <poll.h>
#include <system_error>
#include <time.h>
#include <unistd.h>

namespace ipcpp::engine {
namespace {

// What the crash handler needs, set while a capture exists: for each of fds 1 and 2, the
// original descriptor and the pipe's read end.
std::atomic<bool> g_capturing{false};
int g_crash_fds[2][2] = {{-1, -1}, {-1, -1}};
constexpr std::array<int, 5> kCrashSignals = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
struct sigaction g_previous[kCrashSignals.size()];
// Set while the reader thread holds output it has read and not yet written on: a crash waits
// for it (a little) before it copies what is left in the pipes.
std::atomic<bool> g_reader_holds_output{false};

// Async-signal-safe: atomic loads, nanosleep, dup2, read, write, sigaction and raise only.
void on_crash(int sig, siginfo_t* info, void* /*context*/) {
  // Up to 20 ms: a reader blocked on a descriptor nobody reads must not hold the crash.
  for (int waited = 0; waited < 200 && g_reader_holds_output.load(); ++waited) {
    const timespec pause{0, 100'000};
    ::nanosleep(&pause, nullptr);
  }
  for (int i = 0; i < 2; ++i) {
    const int original = g_crash_fds[i][0];
    const int read_end = g_crash_fds[i][1];
    if (original < 0) continue;
    ::dup2(original, i + 1);
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::read(read_end, buffer, sizeof buffer);
      if (n <= 0) break;
      (void)!::write(original, buffer, static_cast<std::size_t>(n));
    }
  }
  for (std::size_t i = 0; i < kCrashSignals.size(); ++i) {
    if (kCrashSignals[i] == sig) ::sigaction(sig, &g_previous[i], nullptr);
  }
  // A fault comes back by itself when the faulting instruction runs again, with its own
  // details for the previous handler (a sanitizer's); a sent signal (abort's) is sent again,
  // to be delivered with the previous action once this handler returns.
  if (info == nullptr || info->si_code <= 0 || sig == SIGABRT) ::raise(sig);
}

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a closed terminal: the output has nowhere to go
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

FdOutputCapture::FdOutputCapture() {
  if (g_capturing.exchange(true)) {
    throw std::system_error(std::make_error_code(std::errc::device_or_resource_busy),
                            "output capture: file descriptors 1 and 2 are captured already");
  }
  try {
    start();
  } catch (...) {
    g_capturing = false;
    throw;
  }
}

void FdOutputCapture::start() {
  streams_[0].target = STDOUT_FILENO;
  streams_[1].target = STDERR_FILENO;
  // A process started with fd 1 or 2 closed would get its first pipe there: nothing to
  // capture then.
  for (const Stream& s : streams_) {
    if (::fcntl(s.target, F_GETFD) < 0) throw_errno("output capture: standard descriptors");
  }
  int stop[2];
  if (::pipe2(stop, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("output capture: pipe");
  stop_read_ = stop[0];
  stop_write_ = stop[1];
  int pipes[2][2] = {{-1, -1}, {-1, -1}};
  auto undo = [&] {
    for (auto& s : streams_)
      close_fd(s.original);
    for (auto& p : pipes) {
      close_fd(p[0]);
      close_fd(p[1]);
    }
    close_fd(stop_read_);
    close_fd(stop_write_);
  };
  for (int i = 0; i < 2; ++i) {
    Stream& s = streams_[i];
    s.original = ::fcntl(s.target, F_DUPFD_CLOEXEC, 3);
    // The read end is non-blocking (the reader polls it); the write end, which becomes fd 1
    // or 2, stays blocking as a task expects of its standard output.
    if (s.original < 0 || ::pipe2(pipes[i], O_CLOEXEC) != 0 ||
        ::fcntl(pipes[i][0], F_SETFL, O_NONBLOCK) != 0) {
      const int saved = errno;
      undo();
      errno = saved;
      throw_errno("output capture: standard descriptors");
    }
    // A larger pipe means fewer wake-ups of the reader for a task that writes a lot; the
    // default (64 KiB) stays when the system refuses.
    (void)::fcntl(pipes[i][1], F_SETPIPE_SZ, 1 << 20);
  }
  const int err_copy = ::fcntl(streams_[1].original, F_DUPFD_CLOEXEC, 3);
  original_err_file_ = err_copy >= 0 ? ::fdopen(err_copy, "w") : nullptr;
  if (original_err_file_ == nullptr) {
    const int saved = errno;
    if (err_copy >= 0) ::close(err_copy);
    undo();
    errno = saved;
    throw_errno("output capture: a stream for the original standard error");
  }
  std::fflush(stdout);
  std::fflush(stderr);
  // A pipe would make C stdio buffer standard output in 4 KiB blocks: keep a terminal's line
  // buffering, so that a task's printf lines and its children's output stay in order.
  std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);
  for (int i = 0; i < 2; ++i) {
    ::dup2(pipes[i][1], streams_[i].target);  // fd 1 and 2 are open, so this cannot fail
    close_fd(pipes[i][1]);
    streams_[i].read_end = pipes[i][0];
  }
  try {
    reader_ = std::thread([this] { run(); });
  } catch (...) {
    for (auto& s : streams_) {
      ::dup2(s.original, s.target);
      close_fd(s.original);
      close_fd(s.read_end);
    }
    std::fclose(original_err_file_);
    close_fd(stop_read_);
    close_fd(stop_write_);
    throw;
  }
  for (int i = 0; i < 2; ++i) {
    g_crash_fds[i][0] = streams_[i].original;
    g_crash_fds[i][1] = streams_[i].read_end;
  }
  struct sigaction action = {};
  action.sa_sigaction = on_crash;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  for (std::size_t i = 0; i < kCrashSignals.size(); ++i)
    ::sigaction(kCrashSignals[i], &action, &g_previous[i]);
}

FdOutputCapture::~FdOutputCapture() {
  for (std::size_t i = 0; i < kCrashSignals.size(); ++i)
    ::sigaction(kCrashSignals[i], &g_previous[i], nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  const char byte = 0;
  (void)::write(stop_write_, &byte, 1);
  reader_.join();
  std::lock_guard lock(mu_);
  capturing_ = false;
  for (auto& s : streams_) {
    // Give the process its descriptor back first: the pipe's last write end closes with it,
    // and what is left in the pipe is read to the end.
    ::dup2(s.original, s.target);
    std::string tee;
    drain_locked(s, tee, SIZE_MAX);
    write_all(s.original, tee.data(), tee.size());
    close_fd(s.read_end);
    close_fd(s.original);
  }
  std::fclose(original_err_file_);
  close_fd(stop_read_);
  close_fd(stop_write_);
  g_crash_fds[0][0] = g_crash_fds[1][0] = -1;
  g_capturing = false;
}

void FdOutputCapture::begin() {
  std::lock_guard lock(mu_);
  capturing_ = true;
}

FdOutputCapture::Output FdOutputCapture::take() {
  std::fflush(stdout);
  std::fflush(stderr);
  pollfd fds[2] = {{streams_[0].read_end, POLLIN, 0}, {streams_[1].read_end, POLLIN, 0}};
  std::string tee[2];
  Output taken;
  {
    std::lock_guard lock(mu_);
    // One system call when the task wrote nothing there, as most do. The bound only matters
    // for a thread the task left writing without pause.
    if (::poll(fds, 2, 0) > 0) {
      for (int i = 0; i < 2; ++i) {
        if (fds[i].revents != 0) drain_locked(streams_[i], tee[i], 2 * kMaxPending);
      }
    }
    taken = {take_text(streams_[0]), take_text(streams_[1])};
  }
  for (int i = 0; i < 2; ++i)
    write_all(streams_[i].original, tee[i].data(), tee[i].size());
  return taken;
}

void FdOutputCapture::end() {
  std::lock_guard lock(mu_);
  capturing_ = false;
  // What came after the task's last take() (from a thread it left running) has gone to the
  // original descriptors already; it is not the next task's.
  for (auto& s : streams_) {
    s.pending.clear();
    s.dropped = 0;
  }
}

bool FdOutputCapture::drain_locked(Stream& s, std::string& tee, std::size_t limit) {
  char buffer[65536];
  while (tee.size() < limit) {
    const ssize_t n = ::read(s.read_end, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return false;  // every write end is closed (a task closed fd 1 or 2)
    if (n < 0) return true;    // empty for now
    const auto size = static_cast<std::size_t>(n);
    tee.append(buffer, size);
    if (!capturing_) {
      continue;
    } else if (s.pending.size() + size <= kMaxPending) {
      s.pending.append(buffer, size);
    } else {
      const std::size_t room = kMaxPending - s.pending.size();
      s.pending.append(buffer, room);
      s.dropped += size - room;
    }
  }
  return true;
}

std::string FdOutputCapture::take_text(Stream& s) {
  std::string text;
  text.swap(s.pending);
  if (s.dropped > 0) {
    if (!text.empty() && text.back() != '\n') text += '\n';
    text += "[ipcpp-engine: " + std::to_string(s.dropped) +
            " more bytes of this output were dropped: a task keeps at most " +
            std::to_string(kMaxPending >> 20) + " MiB per stream until it ends]\n";
    s.dropped = 0;
  }
  return text;
}

void FdOutputCapture::run() {
  pollfd fds[3] = {{streams_[0].read_end, POLLIN, 0},
                   {streams_[1].read_end, POLLIN, 0},
                   {stop_read_, POLLIN, 0}};
  for (;;) {
    const int n = ::poll(fds, 3, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[2].revents != 0) return;
    std::string tee[2];
    {
      std::lock_guard lock(mu_);
      g_reader_holds_output = true;
      for (int i = 0; i < 2; ++i) {
        // A pipe whose write ends are all closed stays readable: stop watching it.
        if (fds[i].revents != 0 && !drain_locked(streams_[i], tee[i], kReadBatch)) fds[i].fd = -1;
      }
    }
    // Outside the mutex: an original descriptor that blocks (a pipe nobody reads) must not
    // hold up the kernel's take().
    for (int i = 0; i < 2; ++i)
      write_all(streams_[i].original, tee[i].data(), tee[i].size());
    g_reader_holds_output = false;
  }
}

}  // namespace ipcpp::engine
