// The built-in functions of every engine (docs/engine.md lists them).
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sched.h>
#include <thread>
#include <unistd.h>

#include <climits>

#include "engine/registry.hpp"

namespace ipcpp::engine {
namespace {

using nlohmann::json;

constexpr std::size_t kRangeLimit = 10'000'000;

Value builtin_sleep(const Args& args, TaskContext& ctx) {
  args.expect(1, 1);
  const double seconds = args.get<double>(0);
  if (!(seconds >= 0) || !std::isfinite(seconds)) {
    throw TaskError("ValueError", "sleep(): seconds must be a finite number >= 0");
  }
  if (!ctx.sleep_for(std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::duration<double>(seconds)))) {
    throw TaskCancelled();
  }
  return Value();
}

Value builtin_echo(const Args& args, TaskContext&) {
  if (args.size() == 1) return args[0];
  return Value::list(args.positional());
}

// A value as print() shows it: strings without quotes, anything else as JSON.
std::string printable(const Value& v) {
  if (v.json().is_string()) return v.json().get<std::string>();
  if (v.is_array()) {
    const Array& a = v.array();
    return "array('" + std::string(dtype_name(a.dtype())) + "', " + std::to_string(a.size()) +
           " elements)";
  }
  return v.json().dump();
}

Value builtin_print(const Args& args, TaskContext& ctx) {
  std::string line;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (i > 0) line += ' ';
    line += printable(args[i]);
  }
  line += '\n';
  ctx.out() << line << std::flush;
  return Value();
}

Value builtin_getpid(const Args& args, TaskContext&) {
  args.expect(0, 0);
  return static_cast<std::int64_t>(::getpid());
}

Value builtin_hostname(const Args& args, TaskContext&) {
  args.expect(0, 0);
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof name) != 0) return std::string("localhost");
  return std::string(name);
}

Value builtin_ncpus(const Args& args, TaskContext&) {
  args.expect(0, 0);
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    return static_cast<std::int64_t>(CPU_COUNT(&set));
  }
  return static_cast<std::int64_t>(std::max(1U, std::thread::hardware_concurrency()));
}

template <class T>
void add_elements(const Array& a, bool& integral, std::int64_t& isum, double& fsum) {
  for (const T x : a.to_vector<T>()) {
    if constexpr (std::is_integral_v<T>) {
      isum += static_cast<std::int64_t>(x);
    } else {
      integral = false;
      fsum += static_cast<double>(x);
    }
  }
}

Value builtin_sum(const Args& args, TaskContext&) {
  args.expect(1, 1);
  bool integral = true;
  std::int64_t isum = 0;
  double fsum = 0;
  const Value& v = args[0];
  if (v.is_array()) {
    const Array& a = v.array();
    switch (a.dtype()) {
      case DType::kInt8:
        add_elements<std::int8_t>(a, integral, isum, fsum);
        break;
      case DType::kInt16:
        add_elements<std::int16_t>(a, integral, isum, fsum);
        break;
      case DType::kInt32:
        add_elements<std::int32_t>(a, integral, isum, fsum);
        break;
      case DType::kInt64:
        add_elements<std::int64_t>(a, integral, isum, fsum);
        break;
      case DType::kUInt8:
        add_elements<std::uint8_t>(a, integral, isum, fsum);
        break;
      case DType::kUInt16:
        add_elements<std::uint16_t>(a, integral, isum, fsum);
        break;
      case DType::kUInt32:
        add_elements<std::uint32_t>(a, integral, isum, fsum);
        break;
      case DType::kUInt64:
        add_elements<std::uint64_t>(a, integral, isum, fsum);
        break;
      case DType::kFloat32:
        add_elements<float>(a, integral, isum, fsum);
        break;
      case DType::kFloat64:
        add_elements<double>(a, integral, isum, fsum);
        break;
    }
  } else if (v.json().is_array()) {
    for (const auto& x : v.json()) {
      if (x.is_number_integer()) {
        isum += x.get<std::int64_t>();
      } else if (x.is_number()) {
        integral = false;
        fsum += x.get<double>();
      } else {
        throw TaskError("TypeError", "sum(): every item must be a number, got " + x.dump());
      }
    }
  } else {
    throw TaskError("TypeError", "sum(): takes a list or an array, got " + v.json().dump());
  }
  if (integral) return isum;
  return fsum + static_cast<double>(isum);
}

Value builtin_len(const Args& args, TaskContext&) {
  args.expect(1, 1);
  const Value& v = args[0];
  if (v.is_array()) {
    const auto& shape = v.array().shape();
    return static_cast<std::int64_t>(shape.empty() ? 1 : shape[0]);
  }
  const json& j = v.json();
  if (j.is_string()) return static_cast<std::int64_t>(j.get_ref<const std::string&>().size());
  if (j.is_array() || j.is_object()) return static_cast<std::int64_t>(j.size());
  throw TaskError("TypeError", "len(): a number has no length: " + j.dump());
}

Value builtin_range(const Args& args, TaskContext&) {
  args.expect(1, 3);
  std::int64_t start = 0;
  std::int64_t stop = 0;
  std::int64_t step = 1;
  if (args.size() == 1) {
    stop = args.get<std::int64_t>(0);
  } else {
    start = args.get<std::int64_t>(0);
    stop = args.get<std::int64_t>(1);
    step = args.get<std::int64_t>(2, 1);
  }
  if (step == 0) throw TaskError("ValueError", "range(): step must not be zero");
  json out = json::array();
  std::size_t n = 0;
  for (std::int64_t x = start; step > 0 ? x < stop : x > stop; x += step) {
    if (++n > kRangeLimit) {
      throw TaskError("ValueError", "range(): more than 10000000 items; use an array instead");
    }
    out.push_back(x);
    if ((step > 0 && x > std::numeric_limits<std::int64_t>::max() - step) ||
        (step < 0 && x < std::numeric_limits<std::int64_t>::min() - step)) {
      break;
    }
  }
  return out;
}

Value builtin_push(const Args& args, TaskContext& ctx) {
  args.expect(0, 1);
  if (args.size() == 1) {
    const Value& all = args[0];
    if (!all.json().is_object() || all.is_array()) {
      throw TaskError("TypeError", "push(): takes an object of name: value, or name=value");
    }
    for (const auto& item : all.json().items())
      ctx.ns().set(item.key(), all.at(item.key()));
  }
  for (const auto& [name, value] : args.keywords())
    ctx.ns().set(name, value);
  return Value();
}

Value builtin_pull(const Args& args, TaskContext& ctx) {
  args.expect(1, 1);
  const json& names = args[0].json();
  if (names.is_string()) return ctx.ns().at(names.get<std::string>());
  if (!names.is_array()) throw TaskError("TypeError", "pull(): takes a name or a list of names");
  std::vector<Value> values;
  values.reserve(names.size());
  for (const auto& name : names) {
    if (!name.is_string()) throw TaskError("TypeError", "pull(): names must be strings");
    values.push_back(ctx.ns().at(name.get<std::string>()));
  }
  return Value::list(std::move(values));
}

Value builtin_names(const Args& args, TaskContext& ctx) {
  args.expect(0, 0);
  return json(ctx.ns().names());
}

Value builtin_delete(const Args& args, TaskContext& ctx) {
  args.expect(1, 1);
  const std::string name = args.get<std::string>(0);
  if (!ctx.ns().erase(name)) throw TaskError("NameError", "name '" + name + "' is not defined");
  return Value();
}

Value builtin_env(const Args& args, TaskContext&) {
  args.expect(1, 1);
  const char* v = std::getenv(args.get<std::string>(0).c_str());
  if (v == nullptr) return Value();
  return std::string(v);
}

}  // namespace

const std::vector<TaskInfo>& builtin_functions() {
  static const std::vector<TaskInfo> functions = {
      {"sleep", "sleep(seconds): waits (an abort or a stop interrupts it); returns null",
       &builtin_sleep},
      {"echo", "echo(x, ...): returns its argument (several: the list of them)", &builtin_echo},
      {"print", "print(x, ...): writes its arguments to stdout, separated by spaces",
       &builtin_print},
      {"getpid", "getpid(): the engine's process id", &builtin_getpid},
      {"hostname", "hostname(): the name of the engine's machine", &builtin_hostname},
      {"ncpus", "ncpus(): the CPU cores this engine may run on", &builtin_ncpus},
      {"sum", "sum(list or array): the sum of the numbers (an integer if they all are)",
       &builtin_sum},
      {"len", "len(x): items of a list, object, string or array", &builtin_len},
      {"range", "range(stop) or range(start, stop[, step]): a list of integers", &builtin_range},
      {"push", "push(name=value, ...) or push({name: value}): assigns in the namespace",
       &builtin_push},
      {"pull", "pull(name) or pull([names]): values from the namespace", &builtin_pull},
      {"names", "names(): the names defined in the namespace", &builtin_names},
      {"delete", "delete(name): removes a name from the namespace", &builtin_delete},
      {"env", "env(name): an environment variable of the engine, or null", &builtin_env},
  };
  return functions;
}

}  // namespace ipcpp::engine
