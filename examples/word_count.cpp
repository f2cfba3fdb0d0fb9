// Word count as a map-reduce, the example of IPython parallel's wordfreq.py and of every
// map-reduce tutorial since, on ipcpp engines that have the example task library loaded (for
// `count_words`):
//
//   ipcpp-cluster start -n 4 --daemonize --load build/release/lib/libipcpp_example_tasks.so
//   build/release/bin/word_count
//   ipcpp-cluster stop
//
// Map: count_words(path=FILE) for each text file, one load-balanced task per file; each engine
// reads its file and returns {word: count}. Reduce: the client adds the counts up and prints
// the most frequent words. The check counts every file again here and compares all counts.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "examples/example_options.hpp"

#ifndef IPCPP_EXAMPLES_DATA_DIR
#define IPCPP_EXAMPLES_DATA_DIR "examples/data"
#endif

namespace {

namespace fs = std::filesystem;
using Counts = std::map<std::string, std::int64_t>;

// The words of `text` as count_words defines them (examples/tasks/README.md), written again
// here independently: runs of ASCII letters, digits, apostrophes and non-ASCII bytes;
// ASCII lower-cased; apostrophes at either end dropped.
void count_locally(const std::string& text, Counts& counts) {
  const auto in_word = [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '\'' || c >= 0x80;
  };
  std::size_t i = 0;
  while (i < text.size()) {
    if (!in_word(text[i])) {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < text.size() && in_word(text[end]))
      ++end;
    std::string word = text.substr(i, end - i);
    i = end;
    const std::size_t first = word.find_first_not_of('\'');
    if (first == std::string::npos) continue;
    word = word.substr(first, word.find_last_not_of('\'') - first + 1);
    for (char& c : word) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    ++counts[word];
  }
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return std::move(text).str();
}

std::int64_t total(const Counts& counts) {
  std::int64_t sum = 0;
  for (const auto& [word, n] : counts)
    sum += n;
  return sum;
}

// The `n` most frequent words, the most frequent first; ties in alphabetical order.
std::vector<std::pair<std::string, std::int64_t>> top(const Counts& counts, std::size_t n) {
  std::vector<std::pair<std::string, std::int64_t>> words(counts.begin(), counts.end());
  std::stable_sort(words.begin(), words.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  words.resize(std::min(n, words.size()));
  return words;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Word count as a map-reduce: count_words per file on the engines, sum here"};
  examples::ExampleOptions options;
  add_example_options(app, options);
  std::string data_dir = IPCPP_EXAMPLES_DATA_DIR "/words";
  std::size_t top_n = 10;
  app.add_option("--data-dir", data_dir, "Directory of the text files (*.txt, UTF-8)")
      ->type_name("DIR")
      ->capture_default_str();
  app.add_option("--top", top_n, "How many of the most frequent words to print")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(data_dir)) {
      if (entry.path().extension() == ".txt") files.push_back(fs::absolute(entry.path()));
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) throw std::runtime_error("no *.txt file in " + data_dir);

    ipcpp::Client rc = examples::connect(options);
    std::cout << "engines: " << nlohmann::json(rc.ids()).dump() << "\n";
    std::cout << "map: count_words(path=FILE) for the " << files.size() << " files of " << data_dir
              << ", one load-balanced task per file\n";
    // A keyword argument per call, so an apply per file rather than map() (whose elements
    // are positional: count_words would take the path for the text).
    ipcpp::LoadBalancedView lview = rc.load_balanced_view();
    std::vector<ipcpp::AsyncResult> tasks;
    for (const fs::path& file : files)
      tasks.push_back(lview.apply_async("count_words", ipcpp::Kwargs{{"path", file.string()}}));

    // Reduce, as the results come in.
    Counts counts;
    const ipcpp::Seconds timeout(options.timeout);
    std::vector<Counts> per_file;
    std::cout << "\n  file                       words  distinct  engine\n";
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      Counts file_counts = tasks[i].get(timeout).as<Counts>();
      for (const auto& [word, n] : file_counts)
        counts[word] += n;
      std::cout << "  " << std::left << std::setw(24) << files[i].filename().string() << std::right
                << std::setw(8) << total(file_counts) << std::setw(10) << file_counts.size()
                << std::setw(8) << tasks[i].metadata().at(0).engine_id << "\n";
      per_file.push_back(std::move(file_counts));
    }
    std::cout << "\nreduce: " << total(counts) << " words, " << counts.size() << " distinct; the "
              << top_n << " most frequent:\n";
    for (const auto& [word, n] : top(counts, top_n))
      std::cout << "  " << std::left << std::setw(12) << word << std::right << std::setw(6) << n
                << "\n";

    // The check: every file counted again here, file by file and in all.
    int failures = 0;
    Counts expected;
    for (std::size_t i = 0; i < files.size(); ++i) {
      Counts file_expected;
      count_locally(read_file(files[i]), file_expected);
      if (per_file[i] != file_expected) {
        std::cerr << "word_count: " << files[i].string() << ": the engine counted "
                  << total(per_file[i]) << " words (" << per_file[i].size()
                  << " distinct), counted here " << total(file_expected) << " ("
                  << file_expected.size() << " distinct)\n";
        for (const auto& [word, n] : file_expected) {
          const auto it = per_file[i].find(word);
          if (it == per_file[i].end() || it->second != n) {
            std::cerr << "  first difference: '" << word << "' " << n << " here, "
                      << (it == per_file[i].end() ? 0 : it->second) << " there\n";
            break;
          }
        }
        ++failures;
      }
      for (const auto& [word, n] : file_expected)
        expected[word] += n;
    }
    if (failures == 0 && counts != expected) {
      std::cerr << "word_count: the reduced counts differ from the local ones\n";
      ++failures;
    }
    if (failures > 0) {
      std::cerr << "word_count: " << failures << " counts were wrong\n";
      return 1;
    }
    std::cout << "the counts of all " << files.size()
              << " files agree with a local count of the same files\n";
  } catch (const std::exception& e) {
    std::cerr << "word_count: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
