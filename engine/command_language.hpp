// engine/command_language.hpp — the small language of execute_request code.
//
// An engine runs C++ functions, so the code a client sends to it is not Python but a few
// lines of calls and assignments:
//
//   !echo hi                     # a shell command: the rest of the line, verbatim
//   x = getpid()                 # assignment into the engine namespace
//   y = sum([1, 2, x])           # calls, nested; list and object literals
//   minus(5, 6)                  # a bare expression: its value is the result
//   d["key"]; a[0]; a[-1]        # indexing lists, 1-D arrays and objects
//   mandelbrot_row(3, width=80)  # keyword arguments
//
// Grammar. Statements are separated by newlines or ';' outside strings and brackets; blank
// statements are skipped; '#' starts a comment to the end of the line. A statement whose first
// non-blank character is '!' is a shell command: the rest of the line, trimmed, with ';' and
// '#' kept. `NAME = expr` assigns (NAME is [A-Za-z_][A-Za-z0-9_]*); anything else is an
// expression:
//   literals    JSON numbers (-5, 1e3, 2.5; integers stay integers), strings in double or
//               single quotes with JSON escapes plus \', true/false/null and True/False/None
//   [e, ...]    a list (a trailing comma is allowed)
//   {"k": e}    an object; keys are string literals
//   NAME        a namespace lookup
//   NAME(e, ..., key=e, ...)   a call; positional arguments come before keyword arguments
//   e[e]        an integer index into a list or a 1-D array (negative counts from the end), or
//               a string key into an object
//   ( e )       grouping
// Newlines inside (), [] and {} do not end a statement. There are no operators: `a - b` is a
// syntax error that says to call a function instead.
//
// Thread-safety: the functions here keep no state; parsed statements are immutable and may be
// shared between threads.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "ipcpp/engine.hpp"
#include "ipcpp/value.hpp"

namespace ipcpp::engine {

// Brackets (calls, lists, objects, parentheses, indexing) nest at most this deep; deeper
// code is the SyntaxError "expression nested too deeply".
inline constexpr int kMaxNestingDepth = 256;

// One node of an expression's syntax tree, built by parse_program and immutable afterwards.
// The tree is at most about 2 * kMaxNestingDepth nodes deep.
struct Expression {
  enum class Kind { kLiteral, kName, kList, kObject, kCall, kIndex };
  Kind kind = Kind::kLiteral;
  nlohmann::json literal;  // kLiteral: a number, string, boolean or null
  std::string name;        // kName: the name looked up; kCall: the function called
  // kList: the elements; kCall: the positional arguments; kIndex: {container, index}.
  std::vector<std::shared_ptr<const Expression>> items;
  // kObject: the entries in source order; kCall: the keyword arguments in source order.
  std::vector<std::pair<std::string, std::shared_ptr<const Expression>>> fields;
  int line = 1;    // 1-based line where the expression starts
  int column = 1;  // 1-based column (in characters) where it starts
};

struct Statement {
  enum class Kind { kShell, kAssign, kExpression };
  Kind kind = Kind::kExpression;
  std::string shell_command;                     // kShell: the command, trimmed, non-empty
  std::string target;                            // kAssign: the name assigned
  std::shared_ptr<const Expression> expression;  // kAssign and kExpression
  int line = 1;                                  // 1-based line where the statement starts
  std::string text;                              // the statement's source text (trimmed)
};

// Where and why code does not parse. Columns count characters (UTF-8 code points), not bytes.
struct SyntaxError {
  std::string message;      // e.g. "expected ')' to close the call of 'sum' opened at column 5"
  int line = 1;             // 1-based
  int column = 1;           // 1-based
  std::string source_line;  // the offending line's text, without its line break

  // "line 2, column 7: <message>"
  std::string describe() const;
  // Python-style traceback lines, each ending in '\n':
  //   {"  line 2\n", "    y = sum(1,\n", "          ^\n", "SyntaxError: <message>\n"}
  // The caret line keeps the source line's tabs, so the caret lines up under tabs too.
  std::vector<std::string> traceback() const;
};

// Parses a whole program. Returns its statements in order (none for blank code), or the first
// syntax error. Never throws on bad input and accepts any byte string: code that is not valid
// UTF-8 is a SyntaxError ("the code is not valid UTF-8"), as is nesting deeper than
// kMaxNestingDepth ("expression nested too deeply").
std::variant<std::vector<Statement>, SyntaxError> parse_program(std::string_view code);

// Calls the function `name` with `args`: supplied by the engine (its function registry).
using Caller = std::function<Value(const std::string& name, const Args& args)>;

// Evaluates an expression, arguments and elements left to right.
//   names     are looked up in `ns`; a missing one throws
//             TaskError("NameError", "name 'x' is not defined")
//   calls     go through `call` (which must not be empty); whatever it throws propagates
//             unchanged
//   literals  list and object literals become Value::list / Value::object, so arrays inside
//             them stay raw arrays
//   indexing  a list or 1-D array by an integer (negative counts from the end), an object by a
//             string key. Throws TaskError("IndexError",
//             "index 5 is out of range for a list of 3"), TaskError("KeyError", "'k'"), or
//             TaskError("TypeError", ...) for a wrong kind of index or of container (e.g.
//             "an integer cannot be indexed"). An array element is a JSON number Value.
Value evaluate(const Expression& expression, const Namespace& ns, const Caller& call);

// The items of a list or 1-D array, for map(): the count, and item i (< the count; an array
// element is a JSON number Value). Throw TaskError("TypeError") for anything else.
std::size_t sequence_length(const Value& seq);
Value sequence_item(const Value& seq, std::size_t i);

// The text/plain representation of a value for execute_result: compact JSON for documents
// (strings JSON-quoted, numbers as JSON writes them: 12345, 2.5); a whole array as
// `array('f8', shape=[3], [1.0, 2.0, 3.0])`, showing at most 10 elements then `, ...`;
// arrays inside documents are shown the same way in place of their references. Never throws
// on a well-formed Value (invalid UTF-8 in strings is shown as U+FFFD).
std::string to_text_plain(const Value& value);

// The application/json representation: the document with each array replaced by its numbers
// (nested lists following its shape) when it has at most 1000 elements, else by
// {"dtype": "f8", "shape": [...]}.
nlohmann::json to_application_json(const Value& value);

}  // namespace ipcpp::engine
