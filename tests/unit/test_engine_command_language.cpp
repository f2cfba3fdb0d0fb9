// The command language of execute_request code (engine/command_language.hpp).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <doctest/doctest.h>

#include "ipcpp/engine.hpp"
#include "ipcpp/value.hpp"

#include "engine/command_language.hpp"

using ipcpp::Args;
using ipcpp::Array;
using ipcpp::Bytes;
using ipcpp::DType;
using ipcpp::Namespace;
using ipcpp::TaskError;
using ipcpp::Value;
using ipcpp::engine::Caller;
using ipcpp::engine::evaluate;
using ipcpp::engine::Expression;
using ipcpp::engine::parse_program;
using ipcpp::engine::Statement;
using ipcpp::engine::SyntaxError;
using ipcpp::engine::to_application_json;
using ipcpp::engine::to_text_plain;
using nlohmann::json;

namespace {

std::vector<Statement> parse(std::string_view code) {
  auto result = parse_program(code);
  if (const auto* error = std::get_if<SyntaxError>(&result)) {
    FAIL("unexpected syntax error: " << error->describe());
  }
  return std::get<std::vector<Statement>>(std::move(result));
}

SyntaxError parse_error(std::string_view code) {
  auto result = parse_program(code);
  REQUIRE_MESSAGE(std::holds_alternative<SyntaxError>(result), "parsed: " << code);
  return std::get<SyntaxError>(std::move(result));
}

// "line L, column C: message" for code that must not parse.
std::string error_of(std::string_view code) {
  return parse_error(code).describe();
}

// A namespace and a few functions, recording the calls they receive.
class Engine {
 public:
  Namespace ns;
  std::vector<std::pair<std::string, Args>> calls;

  Caller caller() {
    return [this](const std::string& name, const Args& args) -> Value {
      calls.emplace_back(name, args);
      if (name == "getpid") return 4242;
      if (name == "minus") return args.get<double>(0) - args.get<double>(1);
      if (name == "sum") {
        double total = 0;
        for (double x : args.get<std::vector<double>>(0))
          total += x;
        return total;
      }
      if (name == "arange") {
        std::vector<double> v(args.get<std::size_t>(0));
        for (std::size_t i = 0; i < v.size(); ++i)
          v[i] = static_cast<double>(i);
        return v;
      }
      if (name == "first") return args[0];
      if (name == "fail") throw TaskError("ValueError", "n must be positive, got -3");
      if (name == "crash") throw std::logic_error("broken");
      throw TaskError("NameError", "name '" + name + "' is not defined");
    };
  }

  // Runs the code: assignments go into the namespace; the last expression's value is returned.
  Value run(std::string_view code) {
    Value last;
    for (const Statement& s : parse(code)) {
      REQUIRE(s.kind != Statement::Kind::kShell);
      Value v = evaluate(*s.expression, ns, caller());
      if (s.kind == Statement::Kind::kAssign) {
        ns.set(s.target, std::move(v));
      } else {
        last = std::move(v);
      }
    }
    return last;
  }
};

Value eval(std::string_view code) {
  Engine engine;
  return engine.run(code);
}

// An f8 array whose bytes start at an odd address, as a received frame may.
Array unaligned_doubles(const std::vector<double>& values) {
  auto storage = std::make_shared<std::vector<std::byte>>(values.size() * sizeof(double) + 1);
  std::byte* data = storage->data() + 1;
  if (!values.empty()) std::memcpy(data, values.data(), values.size() * sizeof(double));
  return Array(DType::kFloat64, {values.size()}, Bytes(storage, data, values.size() * 8));
}

}  // namespace

TEST_CASE("command language: blank code, blank statements and comments give no statements") {
  CHECK(parse("").empty());
  CHECK(parse("\n\n  \t\n").empty());
  CHECK(parse(";;  ; \n ;").empty());
  CHECK(parse("# only a comment\n   # another").empty());
}

TEST_CASE("command language: a shell command is the rest of the line, verbatim") {
  const auto statements = parse("!echo hi; ls -l # not a comment  \n  ! pwd\r\nx = 1; !date");
  REQUIRE(statements.size() == 4);
  CHECK(statements[0].kind == Statement::Kind::kShell);
  CHECK(statements[0].shell_command == "echo hi; ls -l # not a comment");
  CHECK(statements[0].text == "!echo hi; ls -l # not a comment");
  CHECK(statements[0].line == 1);
  CHECK(statements[1].shell_command == "pwd");
  CHECK(statements[1].text == "! pwd");
  CHECK(statements[1].line == 2);
  CHECK(statements[2].kind == Statement::Kind::kAssign);
  CHECK(statements[3].kind == Statement::Kind::kShell);
  CHECK(statements[3].shell_command == "date");
  CHECK(statements[3].line == 3);

  CHECK(error_of("x = 1\n  !   \ny = 2") == "line 2, column 3: empty shell command");
  CHECK(error_of("x = !ls") ==
        "line 1, column 5: '!' starts a shell command only at the start of a statement");
}

TEST_CASE("command language: statements are assignments or expressions, with line and text") {
  const auto statements = parse("x = getpid()\n\ny = sum([1, 2, x]);  minus(5, 6)  # the result\n");
  REQUIRE(statements.size() == 3);
  CHECK(statements[0].kind == Statement::Kind::kAssign);
  CHECK(statements[0].target == "x");
  CHECK(statements[0].text == "x = getpid()");
  CHECK(statements[0].line == 1);
  CHECK(statements[1].kind == Statement::Kind::kAssign);
  CHECK(statements[1].target == "y");
  CHECK(statements[1].text == "y = sum([1, 2, x])");
  CHECK(statements[1].line == 3);
  CHECK(statements[2].kind == Statement::Kind::kExpression);
  CHECK(statements[2].text == "minus(5, 6)");
  CHECK(statements[2].line == 3);
  REQUIRE(statements[2].expression != nullptr);
  CHECK(statements[2].expression->kind == Expression::Kind::kCall);
  CHECK(statements[2].expression->name == "minus");
  CHECK(statements[2].expression->items.size() == 2);
  CHECK(statements[2].expression->line == 3);
  CHECK(statements[2].expression->column == 22);
}

TEST_CASE("command language: brackets may span lines, with comments inside") {
  const auto statements = parse("y = sum([1,\n         2,  # two\n         3])\nz = 1");
  REQUIRE(statements.size() == 2);
  CHECK(statements[0].text == "y = sum([1,\n         2,  # two\n         3])");
  CHECK(statements[1].line == 4);
  Engine engine;
  engine.run("y = sum([1,\n  2,\n  3,\n])");
  CHECK(engine.ns.at("y").as<double>() == 6.0);
}

TEST_CASE("command language: literals are JSON numbers, strings and constants") {
  CHECK(eval("-5").json() == json(-5));
  CHECK(eval("-5").json().is_number_integer());
  CHECK(eval("12345").json().is_number_integer());
  CHECK(eval("1e3").json() == json(1000.0));
  CHECK(eval("1e3").json().is_number_float());
  CHECK(eval("2.5").json() == json(2.5));
  CHECK(eval("-0.25E-2").json() == json(-0.0025));
  CHECK(eval("18446744073709551615").json() == json(18446744073709551615ull));
  CHECK(eval(R"("a \"quoted\" line\n")").json() == json("a \"quoted\" line\n"));
  CHECK(eval(R"('it\'s' )").json() == json("it's"));
  CHECK(eval(R"('say "hi"')").json() == json("say \"hi\""));
  CHECK(eval(R"("\\ \/ \b\f\r\t")").json() == json("\\ / \b\f\r\t"));
  CHECK(eval(R"("\u00e9\u20AC \ud83d\ude00")").json() == json("\u00e9\u20ac \U0001F600"));
  CHECK(eval("\"caf\xC3\xA9 # not a comment; nor a break\"").json() ==
        json("caf\xC3\xA9 # not a comment; nor a break"));
  CHECK(eval("true").json() == json(true));
  CHECK(eval("True").json() == json(true));
  CHECK(eval("false").json() == json(false));
  CHECK(eval("False").json() == json(false));
  CHECK(eval("null").json().is_null());
  CHECK(eval("None").json().is_null());
  CHECK(eval("(((7)))").json() == json(7));
}

TEST_CASE("command language: list and object literals may hold names and calls") {
  Engine engine;
  const Value v = engine.run(R"(x = 3
{"pid": getpid(), "list": [1, "two", x, [], {},], 'single': None})");
  CHECK(v.json() == json::parse(R"({"pid": 4242, "list": [1, "two", 3, [], {}], "single": null})"));
}

TEST_CASE("command language: calls nest and are evaluated left to right") {
  Engine engine;
  engine.run("x = getpid()\ny = sum([1, 2, x])");
  CHECK(engine.ns.at("x").json() == json(4242));
  CHECK(engine.ns.at("y").as<double>() == 4245.0);
  REQUIRE(engine.calls.size() == 2);
  CHECK(engine.calls[0].first == "getpid");
  CHECK(engine.calls[0].second.size() == 0);
  CHECK(engine.calls[1].first == "sum");
  CHECK(engine.calls[1].second[0].json() == json{1, 2, 4242});

  CHECK(engine.run("minus(5, 6)").as<double>() == -1.0);
  CHECK(engine.run("minus(sum([10, 5]), minus(3, 1),)").as<double>() == 13.0);
  CHECK(engine.run("first ( 'spaces are fine' )").json() == json("spaces are fine"));
}

TEST_CASE("command language: a call with keyword arguments") {
  Engine engine;
  engine.run("mandel = 0\nfirst(3, width=80, label = 'row', opts={\"x\": [1]})");
  REQUIRE(engine.calls.size() == 1);
  const Args& args = engine.calls[0].second;
  CHECK(args.size() == 1);
  CHECK(args.get<int>(0) == 3);
  REQUIRE(args.keywords().size() == 3);
  CHECK(args.keywords()[0].first == "width");
  CHECK(args.get<int>("width") == 80);
  CHECK(args.keywords()[1].first == "label");
  CHECK(args.get<std::string>("label") == "row");
  CHECK(args.get<json>("opts") == json{{"x", {1}}});

  CHECK(error_of("f(width=80, 3)") ==
        "line 1, column 13: positional argument follows keyword argument");
  CHECK(error_of("f(a=1, a=2)") == "line 1, column 8: keyword argument repeated: a");
  CHECK(error_of("f(1=2)") ==
        "line 1, column 4: a keyword argument needs a name, such as f(key=1)");
  CHECK(error_of("f(None=2)") == "line 1, column 3: cannot assign to None");
  CHECK(error_of("f(a=)") == "line 1, column 5: expected an expression, found ')'");
}

TEST_CASE("command language: arrays inside list and object literals stay raw arrays") {
  Engine engine;
  engine.ns.set("a", Value(std::vector<double>{1.5, 2.5}));
  const Value v = engine.run(R"([a, {"again": a, "n": arange(3)}])");
  CHECK(v.json() == json::parse(R"([{"__buffer__": 0, "dtype": "f8", "shape": [2]},
      {"again": {"__buffer__": 1, "dtype": "f8", "shape": [2]},
       "n": {"__buffer__": 2, "dtype": "f8", "shape": [3]}}])"));
  REQUIRE(v.arrays().size() == 3);
  CHECK(v[1].at("n").as<std::vector<double>>() == std::vector<double>{0, 1, 2});
  CHECK(engine.run("first(a)").is_array());
}

TEST_CASE("command language: indexing lists, objects and arrays") {
  Engine engine;
  engine.ns.set("l", Value::list({Value(10), Value("b"), Value(std::vector<std::int32_t>{7, -8})}));
  engine.ns.set("d", Value(json{{"key", {1, {{"deep", "yes"}}}}}));
  engine.ns.set("a", Value(unaligned_doubles({0.5, 1.5, 2.5})));
  engine.ns.set("u", Value(std::vector<std::uint8_t>{200, 255}));
  engine.ns.set("m", Value(Array(DType::kFloat64, {2, 2},
                                 Bytes::from_vector(std::vector<double>{1, 2, 3, 4}))));

  CHECK(engine.run("l[0]").json() == json(10));
  CHECK(engine.run("l[1]").json() == json("b"));
  CHECK(engine.run("l[-1]").is_array());
  CHECK(engine.run("l[2][1]").json() == json(-8));
  CHECK(engine.run("l[-3]").json() == json(10));
  CHECK(engine.run("d[\"key\"][1]['deep']").json() == json("yes"));
  CHECK(engine.run("a[2]").json() == json(2.5));
  CHECK(engine.run("a[-3]").json() == json(0.5));
  CHECK(engine.run("u[0]").json() == json(200));
  CHECK(engine.run("[5, 6, 7][first(1)]").json() == json(6));
}

TEST_CASE("command language: indexing errors are IndexError, KeyError and TypeError") {
  Engine engine;
  engine.ns.set("l", Value(json{1, 2, 3}));
  engine.ns.set("d", Value(json{{"key", 1}}));
  engine.ns.set("a", Value(std::vector<double>{1, 2, 3}));
  engine.ns.set("m", Value(Array(DType::kFloat64, {2, 2},
                                 Bytes::from_vector(std::vector<double>{1, 2, 3, 4}))));
  const auto error_of_run = [&](std::string_view code) {
    try {
      engine.run(code);
    } catch (const TaskError& e) {
      return e.ename() + ": " + e.what();
    }
    return std::string("no error");
  };
  CHECK(error_of_run("l[5]") == "IndexError: index 5 is out of range for a list of 3");
  CHECK(error_of_run("l[-4]") == "IndexError: index -4 is out of range for a list of 3");
  CHECK(error_of_run("[][0]") == "IndexError: index 0 is out of range for a list of 0");
  CHECK(error_of_run("a[3]") == "IndexError: index 3 is out of range for an array of 3");
  CHECK(error_of_run("d['k']") == "KeyError: 'k'");
  CHECK(error_of_run("d[0]") == "TypeError: an object is indexed by a string key, not an integer");
  CHECK(error_of_run("l['key']") == "TypeError: a list is indexed by an integer, not a string");
  CHECK(error_of_run("l[1.0]") == "TypeError: a list is indexed by an integer, not a float");
  CHECK(error_of_run("l[true]") == "TypeError: a list is indexed by an integer, not a boolean");
  CHECK(error_of_run("l[a]") == "TypeError: a list is indexed by an integer, not an array");
  CHECK(error_of_run("a[None]") == "TypeError: an array is indexed by an integer, not null");
  CHECK(error_of_run("m[0]") ==
        "TypeError: only a 1-D array can be indexed; this one has shape [2, 2]");
  CHECK(error_of_run("5[0]") == "TypeError: an integer cannot be indexed");
  CHECK(error_of_run("'abc'[0]") == "TypeError: a string cannot be indexed");
  CHECK(error_of_run("None[0]") == "TypeError: null cannot be indexed");
}

TEST_CASE("command language: a missing name is a NameError") {
  Engine engine;
  try {
    engine.run("y = sum([1, x])");
    FAIL("no error");
  } catch (const TaskError& e) {
    CHECK(e.ename() == "NameError");
    CHECK(std::string(e.what()) == "name 'x' is not defined");
  }
  CHECK(engine.calls.empty());
  CHECK(engine.ns.find("y") == nullptr);
}

TEST_CASE("command language: exceptions thrown by a call propagate unchanged") {
  Engine engine;
  CHECK_THROWS_WITH_AS(engine.run("[1, fail(-3)]"), "n must be positive, got -3", TaskError);
  CHECK_THROWS_WITH_AS(engine.run("first(crash())"), "broken", std::logic_error);
  CHECK(engine.calls.back().first == "crash");
}

TEST_CASE("command language: operators are a syntax error that says what to do instead") {
  constexpr const char* kAdvice =
      "operators are not supported: call a function, such as minus(a, b)";
  CHECK(error_of("a - b") == std::string("line 1, column 3: ") + kAdvice);
  CHECK(error_of("a-1") == std::string("line 1, column 2: ") + kAdvice);
  CHECK(error_of("x = 1 + 2") == std::string("line 1, column 7: ") + kAdvice);
  CHECK(error_of("f(a * 2)") == std::string("line 1, column 5: ") + kAdvice);
  CHECK(error_of("[1, -x]") == std::string("line 1, column 5: ") + kAdvice);
  CHECK(error_of("x += 1") == std::string("line 1, column 3: ") + kAdvice);
  CHECK(error_of("a == b") == std::string("line 1, column 3: ") + kAdvice);
  CHECK(error_of("a != b") == std::string("line 1, column 3: ") + kAdvice);
  CHECK(error_of("x.shape") ==
        "line 1, column 2: attributes are not supported: call a function, such as f(x)");
}

TEST_CASE("command language: syntax errors say where and what, word for word") {
  CHECK(error_of("y = sum(1,") ==
        "line 1, column 11: expected ')' to close the call of 'sum' opened at column 8");
  CHECK(error_of("y = sum(1,\n\n") ==
        "line 1, column 11: expected ')' to close the call of 'sum' opened at column 8");
  CHECK(error_of("y = sum(1,\n  2\n") ==
        "line 2, column 4: expected ')' to close the call of 'sum' opened at line 1, column 8");
  CHECK(error_of("sum(1 2)") ==
        "line 1, column 7: expected ',' or ')' in the call of 'sum' opened at column 4");
  CHECK(error_of("sum(1; x = 2)") ==
        "line 1, column 6: expected ')' to close the call of 'sum' opened at column 4");
  CHECK(error_of("[1, 2") == "line 1, column 6: expected ']' to close the list opened at column 1");
  CHECK(error_of("[1, 2)") ==
        "line 1, column 6: expected ']' to close the list opened at column 1");
  CHECK(error_of("[1 2]") ==
        "line 1, column 4: expected ',' or ']' in the list opened at column 1");
  CHECK(error_of("{\"a\": 1") ==
        "line 1, column 8: expected '}' to close the object opened at column 1");
  CHECK(error_of("{a: 1}") ==
        "line 1, column 2: object keys must be quoted strings, such as {\"key\": 1}");
  CHECK(error_of("{\"a\" 1}") == "line 1, column 6: expected ':' after the key \"a\"");
  CHECK(error_of("{'a': 1, \"a\": 2}") == "line 1, column 10: duplicate key \"a\" in the object");
  CHECK(error_of("{\"__buffer__\": 0}") ==
        "line 1, column 2: the key \"__buffer__\" is reserved for array references");
  CHECK(error_of("(1") ==
        "line 1, column 3: expected ')' to close the parentheses opened at column 1");
  CHECK(error_of("(1, 2)") ==
        "line 1, column 3: tuples are not supported: use a list, such as [a, b]");
  CHECK(error_of("()") == "line 1, column 2: expected an expression, found ')'");
  CHECK(error_of("a[1") == "line 1, column 4: expected ']' to close the index opened at column 2");
  CHECK(error_of("a[]") == "line 1, column 3: expected an expression, found ']'");
  CHECK(error_of("a[1:2]") ==
        "line 1, column 4: slices are not supported: index one element, such as a[0]");
  CHECK(error_of("x = ") == "line 1, column 4: expected an expression, found the end of the code");
  CHECK(error_of("x =\ny") ==
        "line 1, column 4: expected an expression, found the end of the line");
  CHECK(error_of("x = ,") == "line 1, column 5: expected an expression, found ','");
  CHECK(error_of("x = y = 1") == "line 1, column 7: only one assignment per statement");
  CHECK(error_of("a[0] = 1") ==
        "line 1, column 6: only a name can be assigned to, such as x = f()");
  CHECK(error_of("None = 1") == "line 1, column 1: cannot assign to None");
  CHECK(error_of("f(1)(2)") == "line 1, column 5: only a name can be called, such as f(x)");
  CHECK(error_of("x)") == "line 1, column 2: unmatched ')'");
  CHECK(error_of("]") == "line 1, column 1: unmatched ']'");
  CHECK(error_of("print 'hi'") ==
        "line 1, column 7: expected the end of the statement, found a string");
  CHECK(error_of("x y") ==
        "line 1, column 3: expected the end of the statement, found the name 'y'");
  CHECK(error_of("f(1) 2") ==
        "line 1, column 6: expected the end of the statement, found the number 2");
  CHECK(error_of("x = $y") == "line 1, column 5: unexpected character '$'");
  CHECK(error_of("x = \x01") == "line 1, column 5: unexpected character U+0001");
  CHECK(error_of("x = \xE2\x80\x9Chi\xE2\x80\x9D") ==
        "line 1, column 5: unexpected character '\xE2\x80\x9C' (U+201C)");
}

TEST_CASE("command language: bad literals are syntax errors") {
  CHECK(error_of("x = 'abc") == "line 1, column 5: unterminated string");
  CHECK(error_of("x = \"abc\ny\"") == "line 1, column 5: unterminated string");
  CHECK(error_of("x = \"a\\qb\"") == "line 1, column 7: invalid escape '\\q' in a string");
  CHECK(error_of("x = \"\\u12\"") == "line 1, column 6: invalid \\u escape: expected 4 hex digits");
  CHECK(error_of("x = \"\\ud83d\"") == "line 1, column 6: invalid \\u escape: unpaired surrogate");
  CHECK(error_of("x = \"\\ude00\"") == "line 1, column 6: invalid \\u escape: unpaired surrogate");
  CHECK(error_of("x = 007") == "line 1, column 5: invalid number '007'");
  CHECK(error_of("x = 1.") == "line 1, column 5: invalid number '1.'");
  CHECK(error_of("x = .5") == "line 1, column 5: invalid number '.5'");
  CHECK(error_of("x = 0x1F") == "line 1, column 5: invalid number '0x1F'");
  CHECK(error_of("x = 1.5.2") == "line 1, column 5: invalid number '1.5.2'");
  CHECK(error_of("x = 1e999") == "line 1, column 5: number out of range '1e999'");
  CHECK(error_of("x = \"ok\"; y = 'bad") == "line 1, column 15: unterminated string");
  // An error earlier in the code is reported before a lexical error later on.
  CHECK(error_of("x = (\ny = 'bad") ==
        "line 2, column 3: expected ')' to close the parentheses opened at line 1, column 5");
}

TEST_CASE("command language: columns count characters, and code must be UTF-8") {
  CHECK(error_of("s = '\xC3\xA9\xC3\xA9' 1") ==
        "line 1, column 10: expected the end of the statement, found the number 1");
  const SyntaxError e = parse_error("x = 1\ny = 'a\xFF'");
  CHECK(e.describe() == "line 2, column 7: the code is not valid UTF-8");
  CHECK(e.source_line == "y = 'a\xEF\xBF\xBD'");
  CHECK(error_of("\xC0\x80") == "line 1, column 1: the code is not valid UTF-8");
  CHECK(error_of("'\xED\xA0\x80'") == "line 1, column 2: the code is not valid UTF-8");
}

TEST_CASE("command language: a syntax error renders as a Python-style traceback") {
  const SyntaxError e = parse_error("x = 1\ny = sum(1 2)\nz = 3");
  CHECK(e.line == 2);
  CHECK(e.column == 11);
  CHECK(e.source_line == "y = sum(1 2)");
  CHECK(e.message == "expected ',' or ')' in the call of 'sum' opened at column 8");
  CHECK(e.traceback() ==
        std::vector<std::string>{"  line 2\n", "    y = sum(1 2)\n", "              ^\n",
                                 "SyntaxError: expected ',' or ')' in the call of 'sum' opened "
                                 "at column 8\n"});

  SUBCASE("the caret keeps the line's tabs") {
    const SyntaxError tabbed = parse_error("\tx = \t1 +");
    CHECK(tabbed.column == 9);
    CHECK(tabbed.traceback()[2] == "    \t    \t  ^\n");
  }
  SUBCASE("a line break is not part of the source line") {
    const SyntaxError crlf = parse_error("x = (\r\n");
    CHECK(crlf.source_line == "x = (");
    CHECK(crlf.traceback()[1] == "    x = (\n");
  }
}

TEST_CASE("command language: nesting deeper than 256 brackets is a syntax error") {
  const auto nested = [](int depth) {
    return std::string(static_cast<std::size_t>(depth), '[') + "1" +
           std::string(static_cast<std::size_t>(depth), ']');
  };
  Value v = eval(nested(256));
  for (int i = 0; i < 256; ++i)
    v = v[0];
  CHECK(v.json() == json(1));
  CHECK(error_of(nested(257)) == "line 1, column 257: expression nested too deeply");
  CHECK(error_of(std::string(100000, '(')) == "line 1, column 257: expression nested too deeply");
  std::string open_braces = "f(";
  open_braces.append(300, '{');  // not "f(" + std::string(...): a g++ 12 -O3 false warning
  CHECK(error_of(open_braces) ==
        "line 1, column 4: object keys must be quoted strings, such as {\"key\": 1}");

  std::string chain = "x";
  for (int i = 0; i < 256; ++i)
    chain += "[0]";
  CHECK(std::holds_alternative<std::vector<Statement>>(parse_program(chain)));
  CHECK(error_of(chain + "[0]") == "line 1, column 770: expression nested too deeply");
  std::string long_chain = "x";
  for (int i = 0; i < 100000; ++i)
    long_chain += "[0]";
  CHECK(error_of(long_chain) == "line 1, column 770: expression nested too deeply");
}

TEST_CASE("command language: random input never crashes the parser or the evaluator") {
  std::mt19937 random(20240611);
  const auto evaluate_all = [](const std::vector<Statement>& statements) {
    Namespace ns;
    ns.set("x", Value::list({Value(1), Value(std::vector<double>{1, 2})}));
    const Caller call = [](const std::string& name, const Args& args) -> Value {
      if (name == "boom") throw TaskError("ValueError", "boom");
      return Value::list({Value(name), Value(static_cast<int>(args.size()))});
    };
    for (const Statement& s : statements) {
      if (s.expression == nullptr) continue;
      try {
        const Value v = evaluate(*s.expression, ns, call);
        CHECK_FALSE(to_text_plain(v).empty());
        CHECK_FALSE(to_application_json(v).is_discarded());
        if (s.kind == Statement::Kind::kAssign) ns.set(s.target, v);
      } catch (const TaskError&) {
        // NameError, IndexError, ...: fine for random code.
      }
    }
  };
  const auto check = [&](const std::string& code) {
    auto result = parse_program(code);
    if (auto* statements = std::get_if<std::vector<Statement>>(&result)) {
      evaluate_all(*statements);
    } else {
      const SyntaxError& e = std::get<SyntaxError>(result);
      CHECK(e.line >= 1);
      CHECK(e.column >= 1);
      CHECK_FALSE(e.message.empty());
      CHECK(e.traceback().size() == 4);
    }
  };

  SUBCASE("random bytes") {
    for (int i = 0; i < 2000; ++i) {
      std::string code(random() % 64, '\0');
      for (char& c : code)
        c = static_cast<char>(random() % 256);
      check(code);
    }
  }
  SUBCASE("random pieces of the language") {
    const std::vector<std::string> pieces = {
        "x",  "y", "f",  "boom", "(",    ")", "[",   "]",  "{",  "}",   ",",   ":",
        "=",  ";", "\n", " ",    "!",    "#", "-",   "1",  "-2", "2.5", "'s'", "\"k\"",
        "\\", "'", "\"", "True", "None", "0", "[0]", "\t", ".",  "1e5", "+",   "\xC3\xA9"};
    for (int i = 0; i < 5000; ++i) {
      std::string code;
      const auto n = random() % 40;
      for (std::size_t k = 0; k < n; ++k)
        code += pieces[random() % pieces.size()];
      check(code);
    }
  }
}

TEST_CASE("command language: text/plain is compact JSON, with arrays shown in place") {
  CHECK(to_text_plain(Value(json(12345))) == "12345");
  CHECK(to_text_plain(Value(json(2.5))) == "2.5");
  CHECK(to_text_plain(Value(json(1.0))) == "1.0");
  CHECK(to_text_plain(Value(json("hi"))) == "\"hi\"");
  CHECK(to_text_plain(Value()) == "null");
  CHECK(to_text_plain(Value(json{{"b", {1, "x", nullptr}}, {"a", true}})) ==
        R"({"a":true,"b":[1,"x",null]})");
  CHECK(to_text_plain(Value(std::vector<double>{1, 2, 3})) ==
        "array('f8', shape=[3], [1.0, 2.0, 3.0])");
  CHECK(to_text_plain(Value(std::vector<float>{0.1f, -2.5f})) ==
        "array('f4', shape=[2], [0.1, -2.5])");
  CHECK(to_text_plain(Value(std::vector<std::int64_t>{-1, 9007199254740993})) ==
        "array('i8', shape=[2], [-1, 9007199254740993])");
  CHECK(to_text_plain(Value(std::vector<std::uint8_t>{0, 255})) ==
        "array('u1', shape=[2], [0, 255])");
  CHECK(to_text_plain(Value(std::vector<double>{})) == "array('f8', shape=[0], [])");
  CHECK(to_text_plain(Value(std::vector<double>{NAN, INFINITY, 1e20})) ==
        "array('f8', shape=[3], [nan, inf, 1e+20])");
  std::vector<double> twelve(12);
  for (std::size_t i = 0; i < twelve.size(); ++i)
    twelve[i] = static_cast<double>(i);
  CHECK(to_text_plain(Value(twelve)) ==
        "array('f8', shape=[12], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, ...])");
  CHECK(to_text_plain(Value(Array(DType::kInt32, {2, 2},
                                  Bytes::from_vector(std::vector<std::int32_t>{1, 2, 3, 4})))) ==
        "array('i4', shape=[2, 2], [1, 2, 3, 4])");
  CHECK(to_text_plain(Value::list({Value("n"), Value(unaligned_doubles({0.5}))})) ==
        "[\"n\",array('f8', shape=[1], [0.5])]");
  CHECK(to_text_plain(Value::object({{"v", Value(std::vector<std::int16_t>{7})}})) ==
        "{\"v\":array('i2', shape=[1], [7])}");
  CHECK(to_text_plain(Value(json("bad \xFF byte"))) == "\"bad \xEF\xBF\xBD byte\"");
}

TEST_CASE("command language: application/json has small arrays as numbers, large ones as shapes") {
  CHECK(to_application_json(Value(json{{"a", 1}})) == json{{"a", 1}});
  CHECK(to_application_json(Value(std::vector<double>{1.5, 2})) == json{1.5, 2.0});
  CHECK(to_application_json(Value(std::vector<std::uint64_t>{18446744073709551615ull})) ==
        json{18446744073709551615ull});
  CHECK(to_application_json(
            Value(Array(DType::kInt8, {2, 3},
                        Bytes::from_vector(std::vector<std::int8_t>{1, 2, 3, -4, -5, -6})))) ==
        json::parse("[[1, 2, 3], [-4, -5, -6]]"));
  CHECK(to_application_json(Value(std::vector<double>(1000, 0.5))).size() == 1000);
  CHECK(to_application_json(Value(std::vector<double>(1001, 0.5))) ==
        json{{"dtype", "f8"}, {"shape", {1001}}});
  CHECK(to_application_json(Value::list(
            {Value(1), Value(unaligned_doubles({0.25})), Value(std::vector<float>(5000))})) ==
        json::parse(R"([1, [0.25], {"dtype": "f4", "shape": [5000]}])"));
}
