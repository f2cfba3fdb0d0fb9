#include "task_args.hpp"

#include <cerrno>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>

namespace ipcpp::examples {
namespace {

std::string prefix(std::string_view task) {
  return std::string(task) + "(): ";
}

// A short rendering of an argument for error messages.
std::string show(const Value& value) {
  if (value.is_array()) return "an array";
  std::string text = value.json().dump();
  constexpr std::size_t kMaxShown = 40;
  if (text.size() > kMaxShown) text = text.substr(0, kMaxShown) + "...";
  return text;
}

}  // namespace

void expect_keywords(const Args& args, std::string_view task,
                     std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : args.keywords()) {
    bool known = false;
    for (std::string_view name : allowed)
      known = known || key == name;
    if (!known) {
      throw TaskError("TypeError",
                      std::string(task) + "() got an unexpected keyword argument '" + key + "'");
    }
  }
}

const Value* find_param(const Args& args, std::string_view task, std::size_t index,
                        std::string_view name) {
  const Value* keyword = args.find(name);
  if (index < args.size()) {
    if (keyword != nullptr) {
      throw TaskError("TypeError", std::string(task) + "() got multiple values for argument '" +
                                       std::string(name) + "'");
    }
    return &args[index];
  }
  return keyword;
}

double to_number(const Value& value, std::string_view task, std::string_view what) {
  const nlohmann::json& json = value.json();
  if (value.is_array() || !json.is_number()) {
    throw TaskError("TypeError",
                    prefix(task) + std::string(what) + " must be a number, got " + show(value));
  }
  return json.get<double>();
}

std::int64_t to_integer(const Value& value, std::string_view task, std::string_view what) {
  const nlohmann::json& json = value.json();
  if (!value.is_array() && json.is_number_integer()) {
    if (json.is_number_unsigned() &&
        json.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
      throw TaskError("ValueError",
                      prefix(task) + std::string(what) + " is too large, got " + json.dump());
    }
    return json.get<std::int64_t>();
  }
  const double number = to_number(value, task, what);
  // 2^63 is exactly representable; every integral double below it fits an int64.
  constexpr double kLimit = 9223372036854775808.0;
  if (!std::isfinite(number) || std::trunc(number) != number) {
    throw TaskError("ValueError",
                    prefix(task) + std::string(what) + " must be an integer, got " + json.dump());
  }
  if (number >= kLimit || number < -kLimit) {
    throw TaskError("ValueError", prefix(task) + std::string(what) +
                                      " does not fit in 64 bits, got " + json.dump());
  }
  return static_cast<std::int64_t>(number);
}

std::string to_text(const Value& value, std::string_view task, std::string_view what) {
  if (value.is_array() || !value.json().is_string()) {
    throw TaskError("TypeError",
                    prefix(task) + std::string(what) + " must be a string, got " + show(value));
  }
  return value.json().get<std::string>();
}

std::string read_text_file(const std::string& path) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (!std::filesystem::exists(status)) {
    throw TaskError("FileNotFoundError", "no such file: " + path);
  }
  if (std::filesystem::is_directory(status)) {
    throw TaskError("IsADirectoryError", "is a directory: " + path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw TaskError("OSError", "cannot read " + path + ": " +
                                   std::error_code(errno, std::generic_category()).message());
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw TaskError("OSError", "cannot read " + path + ": read failed");
  return std::move(text).str();
}

}  // namespace ipcpp::examples
