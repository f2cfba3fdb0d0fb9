// The Parallel Python scaling experiment: how long do N tasks of T seconds take on M engines?
// Ideally ceil(N / M) * T: the engines work in rounds of M tasks. The difference is the
// overhead of scheduling, messaging and results.
//
//   ipcpp-cluster start -n 4 --daemonize
//   build/release/bin/scaling --sleep 1 --csv scaling.csv --plot scaling.png
//   ipcpp-cluster stop
//
// For each N of --tasks (default 1, 2, 4, ... up to 4 M), N `sleep(T)` tasks (an engine
// built-in) through a load-balanced view; the wall time from the first submission to the last
// result. Prints CSV `n_tasks,engines,wall_seconds,ideal_seconds` to stdout (the readable
// remarks as # comments) or to --csv FILE; with --plot FILE.png and gnuplot on PATH, a plot of
// the wall time against N with the ideal steps. The check is that every task came back and
// the CSV has one line per N; the timings are shown, never judged.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "examples/example_options.hpp"

namespace {

namespace fs = std::filesystem;

struct Row {
  std::size_t tasks = 0;
  std::size_t engines = 0;
  double wall = 0;
  double ideal = 0;
};

// 1, 2, 4, ... below 4 M, then 4 M.
std::vector<std::size_t> default_task_counts(std::size_t engines) {
  std::vector<std::size_t> counts;
  for (std::size_t n = 1; n < 4 * engines; n *= 2)
    counts.push_back(n);
  counts.push_back(4 * engines);
  return counts;
}

std::string csv_line(const Row& row) {
  std::ostringstream out;
  out << row.tasks << "," << row.engines << "," << std::fixed << std::setprecision(4) << row.wall
      << "," << row.ideal;
  return out.str();
}

constexpr std::string_view kCsvHeader = "n_tasks,engines,wall_seconds,ideal_seconds";

// The full path of `program` found on PATH, or nothing.
std::optional<fs::path> find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::istringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / program;
    if (::access(candidate.c_str(), X_OK) == 0 && !fs::is_directory(candidate)) return candidate;
  }
  return std::nullopt;
}

// Quotes `text` for a gnuplot string ('...', a quote doubled).
std::string gnuplot_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

// Runs a gnuplot script given on its standard input; its exit status (128 + the signal when
// a signal ended it). Gnuplot's messages go to stderr, or nowhere when `quiet`.
int run_gnuplot(const fs::path& gnuplot, const std::string& script, bool quiet = false) {
  std::string command = "'";
  for (char c : gnuplot.string())
    command += c == '\'' ? std::string("'\\''") : std::string(1, c);
  command += quiet ? "' >/dev/null 2>&1" : "' >/dev/null";
  FILE* pipe = ::popen(command.c_str(), "w");
  if (pipe == nullptr) throw std::runtime_error("cannot run " + gnuplot.string());
  std::fwrite(script.data(), 1, script.size(), pipe);
  const int status = ::pclose(pipe);
  if (status == -1) throw std::runtime_error("cannot run " + gnuplot.string());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Plots the wall times against N with the ideal ceil(N / M) T steps, into a PNG. Uses the
// pngcairo terminal when this gnuplot has it (Debian's gnuplot-nox does), else png.
void plot(const fs::path& gnuplot, const std::string& png, const std::vector<Row>& rows,
          double seconds) {
  const std::size_t engines = rows.front().engines;
  std::size_t max_tasks = 0;
  for (const Row& row : rows)
    max_tasks = std::max(max_tasks, row.tasks);
  // Fail here rather than have gnuplot fail to open it and go on.
  if (!std::ofstream(png, std::ios::binary)) throw std::runtime_error("cannot write " + png);
  const bool cairo = run_gnuplot(gnuplot, "set terminal pngcairo\n", true) == 0;

  std::ostringstream script;
  script << "set terminal " << (cairo ? "pngcairo" : "png") << " size 800,500\n"
         << "set output " << gnuplot_quoted(png) << "\n"
         << "set title 'sleep(" << seconds << ") tasks on " << engines
         << " engines, load-balanced'\n"
         << "set xlabel 'tasks (N)'\nset ylabel 'wall time (s)'\n"
         << "set key left top\nset grid\nset samples 2000\n"
         << "set xrange [0:" << max_tasks + 1 << "]\nset yrange [0:*]\n"
         << "$data << EOD\n";
  for (const Row& row : rows)
    script << row.tasks << " " << row.wall << "\n";
  script << "EOD\n"
         << "plot sample [x=1:" << max_tasks << "] ceil(x / " << engines << ".0) * " << seconds
         << " with lines lw 2 title 'ideal: ceil(N/" << engines << ") T', "
         << "$data using 1:2 with points pt 7 ps 1.5 title 'measured'\n";
  const int status = run_gnuplot(gnuplot, script.str());
  if (status != 0) {
    throw std::runtime_error("gnuplot failed (exit status " + std::to_string(status) + ") on " +
                             png);
  }
  std::ifstream in(png, std::ios::binary);
  std::string magic(4, '\0');
  if (!in.read(magic.data(), 4) || magic != "\x89PNG") {
    throw std::runtime_error("gnuplot did not write a PNG file to " + png);
  }
}

std::vector<std::size_t> parse_counts(const std::string& text) {
  std::vector<std::size_t> counts;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    std::size_t used = 0;
    const unsigned long long n = std::stoull(item, &used);
    if (used != item.size() || n == 0 || n > 100'000) {
      throw std::invalid_argument("--tasks: not a task count from 1 to 100000: '" + item + "'");
    }
    counts.push_back(static_cast<std::size_t>(n));
  }
  if (counts.empty()) throw std::invalid_argument("--tasks: no task count");
  return counts;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The Parallel Python scaling experiment: N sleep(T) tasks on M engines"};
  examples::ExampleOptions options;
  add_example_options(app, options);
  std::string tasks_text;
  double seconds = 1.0;
  std::string csv_path;
  std::string png_path;
  app.add_option("--tasks", tasks_text,
                 "Task counts N, comma-separated (default: 1,2,4,... "
                 "up to 4 x engines)")
      ->type_name("N,N,...");
  app.add_option("--sleep,-T", seconds, "Seconds each task sleeps")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--csv", csv_path, "Write the CSV here instead of stdout")->type_name("FILE");
  app.add_option("--plot", png_path, "Plot into this PNG file (needs gnuplot on PATH)")
      ->type_name("FILE.png");
  CLI11_PARSE(app, argc, argv);

  try {
    ipcpp::Client rc = examples::connect(options);
    const std::size_t engines = rc.ids().size();
    const std::vector<std::size_t> counts =
        tasks_text.empty() ? default_task_counts(engines) : parse_counts(tasks_text);

    // The readable remarks go to stdout as # comments when the CSV goes there too.
    const std::string note = csv_path.empty() ? "# " : "";
    std::cout << note << "engines: " << nlohmann::json(rc.ids()).dump() << "\n"
              << note << "N sleep(" << seconds << ") tasks on " << engines
              << " engines through a load-balanced view, for N in " << nlohmann::json(counts).dump()
              << "\n";
    if (csv_path.empty()) std::cout << kCsvHeader << "\n";

    ipcpp::LoadBalancedView lview = rc.load_balanced_view();
    std::vector<Row> rows;
    int failures = 0;
    for (const std::size_t n : counts) {
      const auto start = std::chrono::steady_clock::now();
      const ipcpp::AsyncResult result = lview.map_async("sleep", std::vector<double>(n, seconds));
      const ipcpp::Value value =
          result.get(ipcpp::Seconds(options.timeout + static_cast<double>(n) * seconds));
      const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;

      // Every task came back, and came back well.
      std::size_t ok = 0;
      for (const ipcpp::ResultMetadata& m : result.metadata())
        if (m.status == "ok") ++ok;
      if (value.size() != n || ok != n) {
        std::cerr << "scaling: N = " << n << ": " << value.size() << " results, " << ok
                  << " tasks ok\n";
        ++failures;
      }

      const Row row{n, engines, wall.count(),
                    std::ceil(static_cast<double>(n) / static_cast<double>(engines)) * seconds};
      rows.push_back(row);
      const double overhead = row.wall - row.ideal;
      if (csv_path.empty()) std::cout << csv_line(row) << "\n";
      std::cout << note << std::fixed << std::setprecision(3) << "N = " << std::setw(3) << n
                << ": wall " << row.wall << " s, ideal " << row.ideal << " s, overhead " << overhead
                << " s (" << std::setprecision(1)
                << (row.wall > 0 ? 100.0 * row.ideal / row.wall : 0.0) << "% efficient, "
                << std::setprecision(1) << 1000.0 * overhead / static_cast<double>(n)
                << " ms per task)\n"
                << std::defaultfloat;
    }

    if (!csv_path.empty()) {
      {
        std::ofstream out(csv_path);
        out << kCsvHeader << "\n";
        for (const Row& row : rows)
          out << csv_line(row) << "\n";
        if (!out.flush()) throw std::runtime_error("cannot write " + csv_path);
      }
      // The check: the file holds the header and one line per N.
      std::ifstream in(csv_path);
      std::size_t lines = 0;
      for (std::string line; std::getline(in, line);)
        if (!line.empty()) ++lines;
      if (lines != counts.size() + 1) {
        std::cerr << "scaling: " << csv_path << " has " << lines << " lines, expected "
                  << counts.size() + 1 << "\n";
        ++failures;
      }
      std::cout << "wrote " << csv_path << " (" << rows.size() << " rows)\n";
    }
    if (rows.size() != counts.size()) ++failures;

    if (!png_path.empty()) {
      if (const auto gnuplot = find_on_path("gnuplot")) {
        plot(*gnuplot, png_path, rows, seconds);
        std::cout << note << "wrote " << png_path << " with " << gnuplot->string() << "\n";
      } else {
        std::cout << note << "no gnuplot on PATH: no plot written (apt-get install gnuplot-nox)\n";
      }
    }

    if (failures > 0) {
      std::cerr << "scaling: " << failures << " checks failed\n";
      return 1;
    }
    std::cout << note << "all " << rows.size() << " runs returned every task\n";
  } catch (const std::exception& e) {
    std::cerr << "scaling: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
