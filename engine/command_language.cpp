// The command language of execute_request code (engine/command_language.hpp).
//
// Parsing is two passes: a lexer turns the whole program into tokens (it knows the bracket
// depth, so it drops newlines inside brackets and recognises '!' at the start of a statement),
// then a recursive-descent parser builds statements. The lexer stops at its first error and
// leaves an error token there; the parser reports whichever error comes first in the code.
#include "engine/command_language.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <type_traits>

namespace ipcpp::engine {
namespace {

using Json = nlohmann::json;
using ExpressionPtr = std::shared_ptr<const Expression>;

constexpr const char* kOperatorsMessage =
    "operators are not supported: call a function, such as minus(a, b)";
constexpr const char* kBufferKey = "__buffer__";
constexpr std::size_t kTextPlainElements = 10;
constexpr std::size_t kApplicationJsonElements = 1000;

// ---- Characters ----------------------------------------------------------------------------

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
  return is_name_start(c) || is_digit(c);
}
bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}
bool is_continuation_byte(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (is_blank(text.front()) || text.front() == '\n'))
    text.remove_prefix(1);
  while (!text.empty() && (is_blank(text.back()) || text.back() == '\n'))
    text.remove_suffix(1);
  return text;
}

// The length of the valid UTF-8 sequence that starts at text[i] (i < text.size()), or 0 when
// none does. Overlong forms, surrogates and code points above U+10FFFF are invalid.
std::size_t utf8_length(std::string_view text, std::size_t i, char32_t* code_point = nullptr) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  std::size_t n = 0;
  char32_t cp = 0;
  char32_t min = 0;
  if (b0 < 0x80) {
    n = 1;
    cp = b0;
  } else if ((b0 & 0xE0) == 0xC0) {
    n = 2;
    cp = b0 & 0x1Fu;
    min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3;
    cp = b0 & 0x0Fu;
    min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4;
    cp = b0 & 0x07u;
    min = 0x10000;
  } else {
    return 0;
  }
  if (text.size() - i < n) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  if (code_point != nullptr) *code_point = cp;
  return n;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// `text` with each byte that is not part of valid UTF-8 replaced by U+FFFD.
std::string sanitize_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8_length(text, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string hex4(char32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp));
  return buf;
}

// The line of `code` that holds byte `offset` (a line break at `offset` ends that line),
// without its line break or a trailing '\r'.
std::string line_at(std::string_view code, std::size_t offset) {
  offset = std::min(offset, code.size());
  const std::size_t start = offset == 0 ? 0 : code.rfind('\n', offset - 1);
  const std::size_t begin = start == std::string_view::npos || offset == 0 ? 0 : start + 1;
  std::size_t end = code.find('\n', offset);
  if (end == std::string_view::npos) end = code.size();
  std::string_view line = code.substr(begin, end - begin);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return sanitize_utf8(line);
}

// ---- Tokens --------------------------------------------------------------------------------

enum class TokenType {
  kName,
  kNumber,
  kString,
  kShell,
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kLBrace,
  kRBrace,
  kComma,
  kColon,
  kEquals,
  kSemicolon,
  kNewline,
  kOperator,
  kError,
  kEnd,
};

struct Token {
  TokenType type = TokenType::kEnd;
  std::size_t begin = 0;  // byte offsets into the code
  std::size_t end = 0;
  int line = 1;
  int column = 1;
  Json value;        // kNumber, kString: the literal
  std::string text;  // kShell: the command, trimmed; kError: the message
};

// Turns code (valid UTF-8) into tokens ending with kEnd, or with kError at the first error.
class Lexer {
 public:
  explicit Lexer(std::string_view code) : code_(code) {}

  std::vector<Token> run() {
    while (lex_one()) {
    }
    if (tokens_.empty() || tokens_.back().type != TokenType::kError) {
      Token end;
      end.type = TokenType::kEnd;
      end.begin = end.end = last_end_;
      end.line = last_line_;
      end.column = last_column_;
      tokens_.push_back(std::move(end));
    }
    return std::move(tokens_);
  }

 private:
  bool at_end(std::size_t ahead = 0) const { return pos_ + ahead >= code_.size(); }
  char peek(std::size_t ahead = 0) const { return at_end(ahead) ? '\0' : code_[pos_ + ahead]; }

  void advance(std::size_t n = 1) {
    for (; n > 0 && pos_ < code_.size(); --n) {
      const char c = code_[pos_++];
      if (c == '\n') {
        ++line_;
        column_ = 1;
      } else if (!is_continuation_byte(c)) {
        ++column_;
      }
    }
  }

  Token start(TokenType type) const {
    Token t;
    t.type = type;
    t.begin = t.end = pos_;
    t.line = line_;
    t.column = column_;
    return t;
  }

  void finish(Token t) {
    t.end = pos_;
    if (t.type != TokenType::kNewline) {
      last_end_ = t.end;
      last_line_ = line_;
      last_column_ = column_;
    }
    statement_start_ =
        depth_ == 0 && (t.type == TokenType::kNewline || t.type == TokenType::kSemicolon);
    tokens_.push_back(std::move(t));
  }

  // Records an error at the current position (or `at`) and stops lexing.
  bool error(std::string message, const Token* at = nullptr) {
    Token t = at != nullptr ? *at : start(TokenType::kError);
    t.type = TokenType::kError;
    t.text = std::move(message);
    t.value = Json();
    tokens_.push_back(std::move(t));
    return false;
  }

  bool single(TokenType type, int depth_change = 0) {
    Token t = start(type);
    advance();
    depth_ = std::max(0, depth_ + depth_change);
    finish(std::move(t));
    return true;
  }

  // Lexes one token (or skips a newline inside brackets). Returns false at the end or error.
  bool lex_one() {
    while (!at_end()) {
      if (is_blank(peek())) {
        advance();
      } else if (peek() == '#') {
        while (!at_end() && peek() != '\n')
          advance();
      } else {
        break;
      }
    }
    if (at_end()) return false;
    const char c = peek();
    if (c == '\n') {
      if (depth_ > 0) {
        advance();
        return true;
      }
      return single(TokenType::kNewline);
    }
    if (c == '!' && statement_start_ && depth_ == 0) return lex_shell();
    if (is_name_start(c)) return lex_name();
    if (is_digit(c) || ((c == '-' || c == '.') && is_digit(peek(1)))) return lex_number();
    if (c == '"' || c == '\'') return lex_string(c);
    switch (c) {
      case '(':
        return single(TokenType::kLParen, 1);
      case ')':
        return single(TokenType::kRParen, -1);
      case '[':
        return single(TokenType::kLBracket, 1);
      case ']':
        return single(TokenType::kRBracket, -1);
      case '{':
        return single(TokenType::kLBrace, 1);
      case '}':
        return single(TokenType::kRBrace, -1);
      case ',':
        return single(TokenType::kComma);
      case ':':
        return single(TokenType::kColon);
      case ';':
        return single(TokenType::kSemicolon);
      case '=':
        if (peek(1) == '=') return lex_operator(2);
        return single(TokenType::kEquals);
      case '!':
        return lex_operator(peek(1) == '=' ? 2 : 1);
      default:
        break;
    }
    if (std::string_view("+-*/%<>&|^~@.").find(c) != std::string_view::npos) {
      return lex_operator(1);
    }
    char32_t cp = 0;
    const std::size_t n = utf8_length(code_, pos_, &cp);
    if (cp > 0x20 && cp < 0x7F) return error("unexpected character '" + std::string(1, c) + "'");
    if (cp < 0x80) return error("unexpected character " + hex4(cp));
    return error("unexpected character '" + std::string(code_.substr(pos_, n)) + "' (" + hex4(cp) +
                 ")");
  }

  bool lex_operator(std::size_t length) {
    Token t = start(TokenType::kOperator);
    advance(length);
    finish(std::move(t));
    return true;
  }

  bool lex_shell() {
    Token t = start(TokenType::kShell);
    advance();
    const std::size_t begin = pos_;
    while (!at_end() && peek() != '\n')
      advance();
    t.text = std::string(trim(code_.substr(begin, pos_ - begin)));
    finish(std::move(t));
    return true;
  }

  bool lex_name() {
    Token t = start(TokenType::kName);
    while (!at_end() && is_name_char(peek()))
      advance();
    finish(std::move(t));
    return true;
  }

  // A JSON number, read greedily with anything that could belong to it, so that `1.5.2` or
  // `0x10` is one invalid number rather than several tokens.
  bool lex_number() {
    Token t = start(TokenType::kNumber);
    advance();  // '-', '.' or a digit
    while (!at_end()) {
      const char c = peek();
      const char previous = code_[pos_ - 1];
      if (is_name_char(c) || c == '.' ||
          ((c == '+' || c == '-') && (previous == 'e' || previous == 'E'))) {
        advance();
      } else {
        break;
      }
    }
    const std::string text(code_.substr(t.begin, pos_ - t.begin));
    Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded() || !value.is_number()) {
      return error(
          (json_number_syntax(text) ? "number out of range '" : "invalid number '") + text + "'",
          &t);
    }
    t.value = std::move(value);
    finish(std::move(t));
    return true;
  }

  static bool json_number_syntax(std::string_view s) {
    std::size_t i = 0;
    const auto digits = [&] {
      const std::size_t from = i;
      while (i < s.size() && is_digit(s[i]))
        ++i;
      return i > from;
    };
    if (i < s.size() && s[i] == '-') ++i;
    if (i < s.size() && s[i] == '0') {
      ++i;
    } else if (!digits()) {
      return false;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      if (!digits()) return false;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      if (!digits()) return false;
    }
    return i == s.size();
  }

  // Four hex digits at the current position, consumed; nullopt (nothing consumed) otherwise.
  std::optional<char32_t> hex_digits() {
    char32_t cp = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const char h = peek(k);
      char32_t digit = 0;
      if (is_digit(h)) {
        digit = static_cast<char32_t>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        digit = static_cast<char32_t>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        digit = static_cast<char32_t>(h - 'A' + 10);
      } else {
        return std::nullopt;
      }
      cp = cp * 16 + digit;
    }
    advance(4);
    return cp;
  }

  bool lex_string(char quote) {
    Token t = start(TokenType::kString);
    advance();
    std::string out;
    while (true) {
      if (at_end() || peek() == '\n') return error("unterminated string", &t);
      const char c = peek();
      if (c == quote) {
        advance();
        break;
      }
      if (c != '\\') {
        out += c;
        advance();
        continue;
      }
      const Token backslash = start(TokenType::kError);
      advance();
      if (at_end() || peek() == '\n') return error("unterminated string", &t);
      const char e = peek();
      const std::size_t n = std::max<std::size_t>(1, utf8_length(code_, pos_));
      advance(n);
      switch (e) {
        case '"':
        case '\'':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          const auto cp = hex_digits();
          if (!cp) return error("invalid \\u escape: expected 4 hex digits", &backslash);
          char32_t code_point = *cp;
          if (code_point >= 0xDC00 && code_point <= 0xDFFF) {
            return error("invalid \\u escape: unpaired surrogate", &backslash);
          }
          if (code_point >= 0xD800 && code_point <= 0xDBFF) {
            std::optional<char32_t> low;
            if (peek() == '\\' && peek(1) == 'u') {
              advance(2);
              low = hex_digits();
            }
            if (!low || *low < 0xDC00 || *low > 0xDFFF) {
              return error("invalid \\u escape: unpaired surrogate", &backslash);
            }
            code_point = 0x10000 + ((code_point - 0xD800) << 10) + (*low - 0xDC00);
          }
          append_utf8(out, code_point);
          break;
        }
        default:
          return error(
              "invalid escape '\\" + std::string(code_.substr(pos_ - n, n)) + "' in a string",
              &backslash);
      }
    }
    t.value = Json(std::move(out));
    finish(std::move(t));
    return true;
  }

  std::string_view code_;
  std::size_t pos_ = 0;
  int line_ = 1;
  int column_ = 1;
  int depth_ = 0;                // open brackets
  bool statement_start_ = true;  // the next token starts a statement
  std::size_t last_end_ = 0;     // where the last token other than a newline ended
  int last_line_ = 1;
  int last_column_ = 1;
  std::vector<Token> tokens_;
};

// ---- Parser --------------------------------------------------------------------------------

struct ParseFailure {
  SyntaxError error;
};

std::optional<Json> constant(std::string_view name) {
  if (name == "true" || name == "True") return Json(true);
  if (name == "false" || name == "False") return Json(false);
  if (name == "null" || name == "None") return Json(nullptr);
  return std::nullopt;
}

bool is_closer(TokenType type) {
  return type == TokenType::kRParen || type == TokenType::kRBracket || type == TokenType::kRBrace;
}

class Parser {
 public:
  Parser(std::string_view code, std::vector<Token> tokens)
      : code_(code), tokens_(std::move(tokens)) {}

  std::vector<Statement> program() {
    std::vector<Statement> statements;
    while (true) {
      while (current().type == TokenType::kNewline || current().type == TokenType::kSemicolon) {
        advance();
      }
      if (current().type == TokenType::kEnd) return statements;
      statements.push_back(statement());
    }
  }

 private:
  // The bracketed construct being parsed, for messages.
  struct Open {
    const Token* token;
    TokenType closer;
    std::string what;  // "the list", "the call of 'sum'", ...
  };

  const Token& current() const { return tokens_[pos_]; }
  const Token& next() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < tokens_.size()) {
      last_end_ = tokens_[pos_].end;
      ++pos_;
    }
  }
  std::string_view text_of(const Token& t) const { return code_.substr(t.begin, t.end - t.begin); }

  [[noreturn]] void fail(const Token& at, std::string message) const {
    SyntaxError e;
    e.message = at.type == TokenType::kError ? at.text : std::move(message);
    e.line = at.line;
    e.column = at.column;
    e.source_line = line_at(code_, at.begin);
    throw ParseFailure{std::move(e)};
  }

  std::string describe(const Token& t) const {
    switch (t.type) {
      case TokenType::kName:
        return "the name '" + std::string(text_of(t)) + "'";
      case TokenType::kNumber:
        return "the number " + std::string(text_of(t));
      case TokenType::kString:
        return "a string";
      case TokenType::kShell:
        return "a shell command";
      case TokenType::kNewline:
        return "the end of the line";
      case TokenType::kEnd:
      case TokenType::kError:
        return "the end of the code";
      default:
        return "'" + std::string(text_of(t)) + "'";
    }
  }

  // Fails at `t`, found where an expression could continue: with the lexer's error, the
  // message about operators, or `otherwise`.
  [[noreturn]] void fail_after_expression(const Token& t, std::string otherwise) const {
    if (t.type == TokenType::kOperator) fail(t, operator_message(t));
    if (t.type == TokenType::kNumber && code_[t.begin] == '-') fail(t, kOperatorsMessage);
    if (t.type == TokenType::kLParen) fail(t, "only a name can be called, such as f(x)");
    fail(t, std::move(otherwise));
  }

  std::string operator_message(const Token& t) const {
    const std::string_view op = text_of(t);
    if (op == "!") return "'!' starts a shell command only at the start of a statement";
    if (op == ".") return "attributes are not supported: call a function, such as f(x)";
    return kOperatorsMessage;
  }

  std::string opened_at(const Open& open, const Token& at) const {
    const Token& o = *open.token;
    return o.line == at.line
               ? "column " + std::to_string(o.column)
               : "line " + std::to_string(o.line) + ", column " + std::to_string(o.column);
  }

  static char closer_char(TokenType closer) {
    return closer == TokenType::kRParen ? ')' : closer == TokenType::kRBracket ? ']' : '}';
  }

  [[noreturn]] void fail_unclosed(const Open& open, const Token& at) const {
    fail(at, std::string("expected '") + closer_char(open.closer) + "' to close " + open.what +
                 " opened at " + opened_at(open, at));
  }

  // The code ends, or a statement or another bracket does, where `open` wants more.
  bool ends_early(const Open& open, const Token& t) const {
    return t.type == TokenType::kEnd || t.type == TokenType::kSemicolon ||
           (is_closer(t.type) && t.type != open.closer);
  }

  // Before an item of a construct: fails when the construct cannot go on.
  void check_item_start(const Open& open) const {
    if (ends_early(open, current())) fail_unclosed(open, current());
  }

  // After an item of a comma-separated construct: consumes ',' or the closer. Returns true
  // when the construct is closed.
  bool after_item(const Open& open) {
    const Token& t = current();
    if (t.type == TokenType::kComma) {
      advance();
      return false;
    }
    if (t.type == open.closer) {
      advance();
      return true;
    }
    if (ends_early(open, t)) fail_unclosed(open, t);
    fail_after_expression(t, std::string("expected ',' or '") + closer_char(open.closer) + "' in " +
                                 open.what + " opened at " + opened_at(open, t));
  }

  void check_depth(const Token& open, int depth) const {
    if (depth >= kMaxNestingDepth) fail(open, "expression nested too deeply");
  }

  static std::shared_ptr<Expression> node(Expression::Kind kind, const Token& at) {
    auto e = std::make_shared<Expression>();
    e->kind = kind;
    e->line = at.line;
    e->column = at.column;
    return e;
  }

  Statement statement() {
    const Token& first = current();
    const std::size_t begin = first.begin;
    Statement s;
    s.line = first.line;
    if (first.type == TokenType::kShell) {
      if (first.text.empty()) fail(first, "empty shell command");
      s.kind = Statement::Kind::kShell;
      s.shell_command = first.text;
      s.text = std::string(trim(text_of(first)));
      advance();
      return s;
    }
    if (is_closer(first.type)) fail(first, "unmatched '" + std::string(text_of(first)) + "'");
    const bool assignment = first.type == TokenType::kName && next().type == TokenType::kEquals;
    if (assignment) {
      if (constant(text_of(first))) fail(first, "cannot assign to " + std::string(text_of(first)));
      s.kind = Statement::Kind::kAssign;
      s.target = std::string(text_of(first));
      advance();
      advance();
    } else {
      s.kind = Statement::Kind::kExpression;
    }
    s.expression = expression(0);
    const Token& t = current();
    if (t.type != TokenType::kNewline && t.type != TokenType::kSemicolon &&
        t.type != TokenType::kEnd) {
      if (t.type == TokenType::kEquals) {
        fail(t, assignment ? "only one assignment per statement"
                           : "only a name can be assigned to, such as x = f()");
      }
      if (is_closer(t.type)) fail(t, "unmatched '" + std::string(text_of(t)) + "'");
      fail_after_expression(t, "expected the end of the statement, found " + describe(t));
    }
    s.text = std::string(trim(code_.substr(begin, last_end_ - begin)));
    return s;
  }

  // An expression whose brackets are `depth` deep: a primary, then any number of indexes.
  ExpressionPtr expression(int depth) {
    ExpressionPtr e = primary(depth);
    for (int chain = 1; current().type == TokenType::kLBracket; ++chain) {
      const Token& open_token = current();
      check_depth(open_token, depth + chain - 1);
      const Open open{&open_token, TokenType::kRBracket, "the index"};
      advance();
      check_item_start(open);
      ExpressionPtr index = expression(depth + chain);
      if (current().type == TokenType::kColon) {
        fail(current(), "slices are not supported: index one element, such as a[0]");
      }
      if (current().type != TokenType::kRBracket) {
        if (ends_early(open, current())) fail_unclosed(open, current());
        fail_after_expression(
            current(), "expected ']' to close the index opened at " + opened_at(open, current()));
      }
      advance();
      auto indexed = std::make_shared<Expression>();
      indexed->kind = Expression::Kind::kIndex;
      indexed->line = e->line;
      indexed->column = e->column;
      indexed->items = {std::move(e), std::move(index)};
      e = std::move(indexed);
    }
    return e;
  }

  ExpressionPtr primary(int depth) {
    const Token& t = current();
    switch (t.type) {
      case TokenType::kNumber:
      case TokenType::kString: {
        auto e = node(Expression::Kind::kLiteral, t);
        e->literal = t.value;
        advance();
        return e;
      }
      case TokenType::kName: {
        if (auto value = constant(text_of(t))) {
          auto e = node(Expression::Kind::kLiteral, t);
          e->literal = std::move(*value);
          advance();
          return e;
        }
        if (next().type == TokenType::kLParen) return call(depth);
        auto e = node(Expression::Kind::kName, t);
        e->name = std::string(text_of(t));
        advance();
        return e;
      }
      case TokenType::kLBracket:
        return list(depth);
      case TokenType::kLBrace:
        return object(depth);
      case TokenType::kLParen:
        return parenthesized(depth);
      case TokenType::kOperator:
        fail(t, operator_message(t));
      default:
        fail(t, "expected an expression, found " + describe(t));
    }
  }

  ExpressionPtr call(int depth) {
    const Token& name = current();
    auto e = node(Expression::Kind::kCall, name);
    e->name = std::string(text_of(name));
    advance();
    const Token& open_token = current();
    check_depth(open_token, depth);
    const Open open{&open_token, TokenType::kRParen, "the call of '" + e->name + "'"};
    advance();
    bool keywords = false;
    while (true) {
      if (current().type == TokenType::kRParen) {
        advance();
        break;
      }
      check_item_start(open);
      const Token& t = current();
      if (t.type == TokenType::kName && next().type == TokenType::kEquals) {
        const std::string key(text_of(t));
        if (constant(key)) fail(t, "cannot assign to " + key);
        for (const auto& field : e->fields) {
          if (field.first == key) fail(t, "keyword argument repeated: " + key);
        }
        advance();
        advance();
        check_item_start(open);
        e->fields.emplace_back(key, expression(depth + 1));
        keywords = true;
      } else {
        if (keywords && (t.type == TokenType::kName || t.type == TokenType::kNumber ||
                         t.type == TokenType::kString || t.type == TokenType::kLBracket ||
                         t.type == TokenType::kLBrace || t.type == TokenType::kLParen)) {
          fail(t, "positional argument follows keyword argument");
        }
        e->items.push_back(expression(depth + 1));
      }
      if (current().type == TokenType::kEquals) {
        fail(current(), "a keyword argument needs a name, such as f(key=1)");
      }
      if (after_item(open)) break;
    }
    return e;
  }

  ExpressionPtr list(int depth) {
    const Token& open_token = current();
    check_depth(open_token, depth);
    const Open open{&open_token, TokenType::kRBracket, "the list"};
    auto e = node(Expression::Kind::kList, open_token);
    advance();
    while (true) {
      if (current().type == TokenType::kRBracket) {
        advance();
        break;
      }
      check_item_start(open);
      e->items.push_back(expression(depth + 1));
      if (after_item(open)) break;
    }
    return e;
  }

  ExpressionPtr object(int depth) {
    const Token& open_token = current();
    check_depth(open_token, depth);
    const Open open{&open_token, TokenType::kRBrace, "the object"};
    auto e = node(Expression::Kind::kObject, open_token);
    advance();
    while (true) {
      if (current().type == TokenType::kRBrace) {
        advance();
        break;
      }
      check_item_start(open);
      const Token& key_token = current();
      if (key_token.type != TokenType::kString) {
        fail(key_token, "object keys must be quoted strings, such as {\"key\": 1}");
      }
      std::string key = key_token.value.get<std::string>();
      if (key == kBufferKey) {
        fail(key_token, "the key \"__buffer__\" is reserved for array references");
      }
      for (const auto& field : e->fields) {
        if (field.first == key)
          fail(key_token, "duplicate key " + key_token.value.dump() + " in the object");
      }
      advance();
      if (current().type != TokenType::kColon) {
        if (ends_early(open, current())) fail_unclosed(open, current());
        fail_after_expression(current(), "expected ':' after the key " + key_token.value.dump());
      }
      advance();
      check_item_start(open);
      e->fields.emplace_back(std::move(key), expression(depth + 1));
      if (after_item(open)) break;
    }
    return e;
  }

  ExpressionPtr parenthesized(int depth) {
    const Token& open_token = current();
    check_depth(open_token, depth);
    const Open open{&open_token, TokenType::kRParen, "the parentheses"};
    advance();
    check_item_start(open);
    ExpressionPtr e = expression(depth + 1);
    if (current().type == TokenType::kComma) {
      fail(current(), "tuples are not supported: use a list, such as [a, b]");
    }
    if (current().type != TokenType::kRParen) {
      if (ends_early(open, current())) fail_unclosed(open, current());
      fail_after_expression(current(), "expected ')' to close the parentheses opened at " +
                                           opened_at(open, current()));
    }
    advance();
    return e;
  }

  std::string_view code_;
  std::vector<Token> tokens_;
  std::size_t pos_ = 0;
  std::size_t last_end_ = 0;  // where the last consumed token ended
};

// Where code stops being valid UTF-8, as an error; nullopt when it is valid.
std::optional<SyntaxError> check_utf8(std::string_view code) {
  int line = 1;
  int column = 1;
  for (std::size_t i = 0; i < code.size();) {
    const std::size_t n = utf8_length(code, i);
    if (n == 0) {
      return SyntaxError{"the code is not valid UTF-8", line, column, line_at(code, i)};
    }
    if (code[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += n;
  }
  return std::nullopt;
}

// ---- Values --------------------------------------------------------------------------------

// Calls f with a value of the C++ element type of `dtype`.
template <class F>
decltype(auto) visit_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kInt8:
      return f(std::int8_t{});
    case DType::kInt16:
      return f(std::int16_t{});
    case DType::kInt32:
      return f(std::int32_t{});
    case DType::kInt64:
      return f(std::int64_t{});
    case DType::kUInt8:
      return f(std::uint8_t{});
    case DType::kUInt16:
      return f(std::uint16_t{});
    case DType::kUInt32:
      return f(std::uint32_t{});
    case DType::kUInt64:
      return f(std::uint64_t{});
    case DType::kFloat32:
      return f(float{});
    case DType::kFloat64:
      break;
  }
  return f(double{});
}

// Element i (< a.size()) of `a`, read with memcpy: frames may be unaligned.
template <class T>
T read_element(const Array& a, std::size_t i) {
  T v{};
  std::memcpy(&v, a.bytes().data() + i * sizeof(T), sizeof(T));
  return v;
}

// Element i as Python's repr writes it: 1.0, 0.1 (shortest for its own precision), -3.
std::string element_text(const Array& a, std::size_t i) {
  return visit_dtype(a.dtype(), [&](auto tag) -> std::string {
    using T = decltype(tag);
    const T v = read_element<T>(a, i);
    char buf[64];
    std::to_chars_result r{};
    if constexpr (std::is_floating_point_v<T>) {
      r = std::to_chars(buf, buf + sizeof buf, v);
    } else if constexpr (std::is_signed_v<T>) {
      r = std::to_chars(buf, buf + sizeof buf, static_cast<std::int64_t>(v));
    } else {
      r = std::to_chars(buf, buf + sizeof buf, static_cast<std::uint64_t>(v));
    }
    std::string s(buf, r.ptr);
    if (std::is_floating_point_v<T> && s.find_first_of(".en") == std::string::npos) s += ".0";
    return s;
  });
}

std::string shape_text(const std::vector<std::size_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string array_text(const Array& a) {
  std::string s =
      "array('" + std::string(dtype_name(a.dtype())) + "', shape=" + shape_text(a.shape()) + ", [";
  const std::size_t shown = std::min(a.size(), kTextPlainElements);
  for (std::size_t i = 0; i < shown; ++i) {
    if (i > 0) s += ", ";
    s += element_text(a, i);
  }
  if (a.size() > shown) s += ", ...";
  return s + "])";
}

// The array that `j` refers to, or nullptr when `j` is not a valid reference.
const Array* referenced_array(const Json& j, const std::vector<Array>& arrays) {
  if (!j.is_object()) return nullptr;
  // Through the object's map: nlohmann's iterator trips g++ 12's -Wnull-dereference at -O3.
  const auto& object = j.get_ref<const Json::object_t&>();
  const auto it = object.find(kBufferKey);
  if (it == object.end() || !it->second.is_number_unsigned()) return nullptr;
  const auto k = it->second.get<std::uint64_t>();
  return k < arrays.size() ? &arrays[static_cast<std::size_t>(k)] : nullptr;
}

std::string json_text(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void append_text_plain(const Json& j, const std::vector<Array>& arrays, std::string& out) {
  if (const Array* a = referenced_array(j, arrays)) {
    out += array_text(*a);
  } else if (j.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& item : j) {
      if (!first) out += ',';
      first = false;
      append_text_plain(item, arrays, out);
    }
    out += ']';
  } else if (j.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& [key, item] : j.items()) {
      if (!first) out += ',';
      first = false;
      out += json_text(Json(key));
      out += ':';
      append_text_plain(item, arrays, out);
    }
    out += '}';
  } else {
    out += json_text(j);
  }
}

// The elements of `a` from `*next` on, nested by shape[dim...].
Json nested_elements(const Array& a, std::size_t dim, std::size_t* next) {
  if (dim == a.shape().size()) return a.element((*next)++);
  Json list = Json::array();
  for (std::size_t i = 0; i < a.shape()[dim]; ++i) {
    list.push_back(nested_elements(a, dim + 1, next));
  }
  return list;
}

Json application_json(const Json& j, const std::vector<Array>& arrays) {
  if (const Array* a = referenced_array(j, arrays)) {
    if (a->size() > kApplicationJsonElements) {
      return Json{{"dtype", dtype_name(a->dtype())}, {"shape", a->shape()}};
    }
    std::size_t next = 0;
    return nested_elements(*a, 0, &next);
  }
  if (j.is_array()) {
    Json out = Json::array();
    for (const auto& item : j)
      out.push_back(application_json(item, arrays));
    return out;
  }
  if (j.is_object()) {
    Json out = Json::object();
    for (const auto& [key, item] : j.items())
      out[key] = application_json(item, arrays);
    return out;
  }
  return j;
}

// "an integer", "a list", ... for messages.
std::string kind_of(const Value& v) {
  if (v.is_array()) return "an array";
  switch (v.json().type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a float";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "a list";
    case Json::value_t::object:
      return "an object";
    default:
      return "a value";
  }
}

// The position that `key` names in a sequence of `size` (negative counts from the end).
// `what` is "a list" or "an array".
std::size_t resolve_index(const Value& key, std::size_t size, const std::string& what) {
  const Json& k = key.json();
  if (key.is_array() || !k.is_number_integer()) {
    throw TaskError("TypeError", what + " is indexed by an integer, not " + kind_of(key));
  }
  const auto out_of_range = [&](const std::string& index) {
    return TaskError("IndexError", "index " + index + " is out of range for " + what + " of " +
                                       std::to_string(size));
  };
  if (k.is_number_unsigned() || k.get<std::int64_t>() >= 0) {
    const auto i = k.get<std::uint64_t>();
    if (i >= size) throw out_of_range(std::to_string(i));
    return static_cast<std::size_t>(i);
  }
  const auto i = k.get<std::int64_t>();
  const std::uint64_t from_end = static_cast<std::uint64_t>(-(i + 1)) + 1;
  if (from_end > size) throw out_of_range(std::to_string(i));
  return size - static_cast<std::size_t>(from_end);
}

Value index_value(const Value& container, const Value& key) {
  if (container.is_array()) {
    const Array& a = container.array();
    if (a.shape().size() != 1) {
      throw TaskError("TypeError", "only a 1-D array can be indexed; this one has shape " +
                                       shape_text(a.shape()));
    }
    return Value(a.element(resolve_index(key, a.size(), "an array")));
  }
  const Json& j = container.json();
  if (j.is_array()) return container[resolve_index(key, j.size(), "a list")];
  if (j.is_object()) {
    if (key.is_array() || !key.json().is_string()) {
      throw TaskError("TypeError", "an object is indexed by a string key, not " + kind_of(key));
    }
    const auto& k = key.json().get_ref<const std::string&>();
    if (!j.contains(k)) throw TaskError("KeyError", "'" + k + "'");
    return container.at(k);
  }
  throw TaskError("TypeError", kind_of(container) + " cannot be indexed");
}

}  // namespace

std::string SyntaxError::describe() const {
  return "line " + std::to_string(line) + ", column " + std::to_string(column) + ": " + message;
}

std::vector<std::string> SyntaxError::traceback() const {
  std::string caret = "    ";
  int col = 1;
  for (std::size_t i = 0; i < source_line.size() && col < column; ++i) {
    if (is_continuation_byte(source_line[i])) continue;
    caret += source_line[i] == '\t' ? '\t' : ' ';
    ++col;
  }
  for (; col < column; ++col)
    caret += ' ';
  return {"  line " + std::to_string(line) + "\n", "    " + source_line + "\n", caret + "^\n",
          "SyntaxError: " + message + "\n"};
}

std::variant<std::vector<Statement>, SyntaxError> parse_program(std::string_view code) {
  if (auto error = check_utf8(code)) return std::move(*error);
  try {
    return Parser(code, Lexer(code).run()).program();
  } catch (ParseFailure& failure) {
    return std::move(failure.error);
  }
}

Value evaluate(const Expression& expression, const Namespace& ns, const Caller& call) {
  switch (expression.kind) {
    case Expression::Kind::kLiteral:
      return Value(expression.literal);
    case Expression::Kind::kName:
      return ns.at(expression.name);
    case Expression::Kind::kList: {
      std::vector<Value> items;
      items.reserve(expression.items.size());
      for (const auto& item : expression.items)
        items.push_back(evaluate(*item, ns, call));
      return Value::list(std::move(items));
    }
    case Expression::Kind::kObject: {
      std::vector<std::pair<std::string, Value>> fields;
      fields.reserve(expression.fields.size());
      for (const auto& [key, item] : expression.fields) {
        fields.emplace_back(key, evaluate(*item, ns, call));
      }
      return Value::object(std::move(fields));
    }
    case Expression::Kind::kCall: {
      std::vector<Value> positional;
      positional.reserve(expression.items.size());
      for (const auto& item : expression.items)
        positional.push_back(evaluate(*item, ns, call));
      std::vector<std::pair<std::string, Value>> keywords;
      keywords.reserve(expression.fields.size());
      for (const auto& [key, item] : expression.fields) {
        keywords.emplace_back(key, evaluate(*item, ns, call));
      }
      return call(expression.name, Args(std::move(positional), std::move(keywords)));
    }
    case Expression::Kind::kIndex: {
      if (expression.items.size() != 2) {
        throw std::invalid_argument("an index expression needs a container and an index");
      }
      const Value container = evaluate(*expression.items[0], ns, call);
      return index_value(container, evaluate(*expression.items[1], ns, call));
    }
  }
  throw std::invalid_argument("unknown expression kind");
}

std::size_t sequence_length(const Value& seq) {
  if (seq.is_array()) {
    const Array& a = seq.array();
    if (a.shape().size() != 1) {
      throw TaskError("TypeError", "only a 1-D array is a sequence; this one has shape " +
                                       shape_text(a.shape()));
    }
    return a.size();
  }
  if (!seq.json().is_array()) throw TaskError("TypeError", kind_of(seq) + " is not a sequence");
  return seq.json().size();
}

Value sequence_item(const Value& seq, std::size_t i) {
  return index_value(seq, Value(static_cast<std::int64_t>(i)));
}

std::string to_text_plain(const Value& value) {
  std::string out;
  append_text_plain(value.json(), value.arrays(), out);
  return out;
}

nlohmann::json to_application_json(const Value& value) {
  return application_json(value.json(), value.arrays());
}

}  // namespace ipcpp::engine
