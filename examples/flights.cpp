// The largest departure delay of each month, one month per task: the Dask tutorial's
// nycflights example (`maxes.append(df.DepDelay.max())`, one file per worker) on ipcpp
// engines that have the example task library loaded (for `maxdelay`):
//
//   ipcpp-cluster start -n 4 --daemonize --load build/release/lib/libipcpp_example_tasks.so
//   build/release/bin/flights
//   ipcpp-cluster stop
//
// A load-balanced map of maxdelay(path) over the month files, then the largest of the months.
// The program reads the same files itself and checks every month the engines sent back.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/example_options.hpp"

#ifndef IPCPP_EXAMPLES_DATA_DIR
#define IPCPP_EXAMPLES_DATA_DIR "examples/data"
#endif

namespace {

namespace fs = std::filesystem;

// What maxdelay returns for one month.
struct Month {
  std::string file;
  std::string month;
  double delay = 0;
  std::string origin;
  std::string dest;
  std::int64_t flights = 0;
  std::int64_t cancelled = 0;

  bool operator==(const Month&) const = default;
};

Month from_json(const nlohmann::json& j) {
  return Month{j.at("file").get<std::string>(),      j.at("month").get<std::string>(),
               j.at("delay").get<double>(),          j.at("origin").get<std::string>(),
               j.at("dest").get<std::string>(),      j.at("flights").get<std::int64_t>(),
               j.at("cancelled").get<std::int64_t>()};
}

std::string describe(const Month& m) {
  std::ostringstream out;
  out << m.month << ": " << m.delay << " min " << m.origin << " -> " << m.dest << ", " << m.flights
      << " flights, " << m.cancelled << " cancelled";
  return out.str();
}

std::vector<std::string> split_commas(const std::string& line) {
  std::vector<std::string> fields;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, ','))
    fields.push_back(field);
  if (!line.empty() && line.back() == ',') fields.emplace_back();
  return fields;
}

// The month computed here, serially, straight from the CSV (the reference for the check).
Month serial_maxdelay(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::string line;
  if (!std::getline(in, line)) throw std::runtime_error(path.string() + " is empty");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const std::vector<std::string> header = split_commas(line);
  const auto column = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) throw std::runtime_error(path.string() + ": no column " + name);
    return static_cast<std::size_t>(it - header.begin());
  };
  const std::size_t year = column("Year");
  const std::size_t month = column("Month");
  const std::size_t delay = column("DepDelay");
  const std::size_t origin = column("Origin");
  const std::size_t dest = column("Dest");

  Month result;
  result.file = path.filename().string();
  std::optional<double> best;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const std::vector<std::string> f = split_commas(line);
    if (f.size() != header.size()) throw std::runtime_error(path.string() + ": bad row " + line);
    if (result.month.empty()) {
      result.month = f[year] + "-" + (f[month].size() == 1 ? "0" : "") + f[month];
    }
    ++result.flights;
    if (f[delay].empty()) {
      ++result.cancelled;
      continue;
    }
    const double d = std::stod(f[delay]);
    if (!best || d > *best) {  // the first of equal delays wins, as in maxdelay
      best = d;
      result.origin = f[origin];
      result.dest = f[dest];
    }
  }
  if (!best) throw std::runtime_error(path.string() + ": no flight with a delay");
  result.delay = *best;
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The largest departure delay of each month of flights, one month per task"};
  examples::ExampleOptions options;
  add_example_options(app, options);
  std::string data_dir = IPCPP_EXAMPLES_DATA_DIR "/flights";
  app.add_option("--data-dir", data_dir, "Directory of the month files (*.csv)")
      ->type_name("DIR")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    // The engines run on this machine: give them absolute paths.
    std::vector<std::string> paths;
    for (const auto& entry : fs::directory_iterator(data_dir)) {
      if (entry.path().extension() == ".csv") paths.push_back(fs::absolute(entry.path()).string());
    }
    std::sort(paths.begin(), paths.end());
    if (paths.empty()) throw std::runtime_error("no *.csv file in " + data_dir);

    ipcpp::Client rc = examples::connect(options);
    std::cout << "engines: " << nlohmann::json(rc.ids()).dump() << "\n";
    std::cout << "load-balanced map of maxdelay(path) over " << paths.size() << " files of "
              << data_dir << ", one file per task\n";
    ipcpp::LoadBalancedView lview = rc.load_balanced_view();
    const ipcpp::AsyncResult result = lview.map_async("maxdelay", nlohmann::json(paths));
    const ipcpp::Value value = result.get(ipcpp::Seconds(options.timeout));
    const std::vector<ipcpp::ResultMetadata> metadata = result.metadata();

    std::vector<Month> months;
    for (std::size_t i = 0; i < value.size(); ++i)
      months.push_back(from_json(value[i].json()));

    std::cout << "\n  month    delay  route        flights  cancelled  engine\n";
    for (std::size_t i = 0; i < months.size(); ++i) {
      const Month& m = months[i];
      std::cout << "  " << std::left << std::setw(7) << m.month << std::right << std::setw(6)
                << m.delay << "  " << std::left << std::setw(11) << (m.origin + " -> " + m.dest)
                << std::right << std::setw(9) << m.flights << std::setw(11) << m.cancelled;
      if (i < metadata.size()) std::cout << std::setw(8) << metadata[i].engine_id;
      std::cout << "\n";
    }
    const auto worst =
        std::max_element(months.begin(), months.end(),
                         [](const Month& a, const Month& b) { return a.delay < b.delay; });
    if (worst != months.end()) {
      std::cout << "\nlargest departure delay of " << months.size() << " months: " << worst->delay
                << " min, " << worst->origin << " -> " << worst->dest << " in " << worst->month
                << "\n";
    }
    std::cout << "wall time " << std::fixed << std::setprecision(3) << result.elapsed().count()
              << " s, engines busy " << result.serial_time().count() << " s in all\n"
              << std::defaultfloat;

    // The check: every file came back, each exactly as computed here.
    int failures = 0;
    if (months.size() != paths.size()) {
      std::cerr << "flights: " << months.size() << " months came back for " << paths.size()
                << " files\n";
      ++failures;
    }
    for (std::size_t i = 0; i < paths.size() && i < months.size(); ++i) {
      const Month expected = serial_maxdelay(paths[i]);
      if (!(months[i] == expected)) {
        std::cerr << "flights: " << paths[i] << ": the engine said " << describe(months[i])
                  << ", computed here: " << describe(expected) << "\n";
        ++failures;
      }
    }
    if (failures > 0) {
      std::cerr << "flights: " << failures << " results were wrong\n";
      return 1;
    }
    std::cout << "all " << months.size() << " months agree with the serial computation\n";
  } catch (const std::exception& e) {
    std::cerr << "flights: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
