// Internal to the Jinja interpreter: tokens, the AST, the lexer and the parser entry points.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/jinja.h"

namespace realm::jinja {

enum class TokKind {
  DATA,
  VAR_BEGIN,
  VAR_END,
  BLOCK_BEGIN,
  BLOCK_END,
  NAME,
  INT,
  FLOAT,
  STRING,
  OP,
  END
};

struct Token {
  TokKind kind = TokKind::END;
  std::string text;  // DATA text, NAME, STRING value (escapes decoded), OP spelling
  int64_t ival = 0;
  double fval = 0;
  int line = 1;
  int col = 1;
};

// Python's str.isspace() for one code point.
bool py_isspace(char32_t c);
// Decodes the UTF-8 code point at s[i] (invalid bytes decode as themselves, length 1).
char32_t decode_utf8(std::string_view s, size_t i, size_t* len);
void append_utf8(std::string& out, char32_t c);
// Python str.strip()/lstrip()/rstrip() without arguments (Unicode whitespace).
std::string_view py_strip(std::string_view s, bool left, bool right);

// Splits a template into data and tag tokens, applying trim_blocks, lstrip_blocks and the -/+
// whitespace controls to the data tokens.
Expected<std::vector<Token>> lex(std::string_view source);

enum class ExprKind {
  LITERAL,  // literal
  NAME,     // name
  GETATTR,  // args[0].name
  GETITEM,  // args[0][args[1]]
  SLICE,    // args[0][args[1]:args[2]:args[3]] (null parts allowed)
  CALL,     // args[0](args[1..], kw)
  FILTER,   // args[0] | name(args[1..], kw)
  TEST,     // args[0] is [not] name(args[1..])
  UNARY,    // name in {"-", "+", "not"}; args[0]
  BINARY,   // name in {+ - * / // % ** ~ and or}; args[0], args[1]
  COMPARE,  // args[0] ops[0] args[1] ops[1] args[2] ...
  COND,     // args[0] if args[1] else args[2] (args[2] may be null)
  LIST,     // [args...]
  TUPLE,    // (args...)
  DICT,     // {args[0]: args[1], ...}
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::LITERAL;
  int line = 0;
  int col = 0;
  Value literal;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> args;
  std::vector<std::string> kw_names;
  std::vector<ExprPtr> kw_values;
  std::vector<std::string> ops;
};

// SCOPE: a body run in its own variable scope ({% generation %} of transformers' chat templates).
enum class StmtKind { TEXT, OUTPUT, IF, FOR, SET, SET_BLOCK, MACRO, BREAK, CONTINUE, SCOPE };

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind = StmtKind::TEXT;
  int line = 0;
  int col = 0;
  std::string text;                  // TEXT; MACRO name; SET namespace attribute ("" if none)
  std::vector<std::string> targets;  // FOR/SET target names; MACRO parameter names
  std::vector<ExprPtr> exprs;        // OUTPUT/SET: [value]; IF: conditions; FOR: [iter, filter?];
                                     // MACRO: parameter defaults (null when none)
  std::vector<Body> bodies;          // IF: one per condition (+ else); FOR: [body, else];
                                     // SET_BLOCK/MACRO/SCOPE: [body]
};

struct Program {
  Body body;
};

// Parses the tokens of lex() into a program. max_depth bounds nesting (hostile templates).
Expected<Program> parse_program(const std::vector<Token>& tokens, int max_depth);

}  // namespace realm::jinja
