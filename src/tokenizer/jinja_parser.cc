// Jinja parser: tokens to AST, following the precedence of Jinja2's parser.
#include <set>

#include "tokenizer/jinja_ast.h"

namespace realm::jinja {
namespace {

class Parser {
 public:
  Parser(const std::vector<Token>& toks, int max_depth) : toks_(toks), max_depth_(max_depth) {}

  Expected<Program> run() {
    Program prog;
    std::string end_tag;
    auto body = parse_body({}, &end_tag);
    if (!body) return body.take_error();
    prog.body = std::move(*body);
    return prog;
  }

 private:
  // Guards recursion depth for hostile templates.
  struct DepthGuard {
    explicit DepthGuard(int& d) : d_(d) { ++d_; }
    ~DepthGuard() { --d_; }
    int& d_;
  };

  const Token& peek(size_t k = 0) const {
    size_t i = pos_ + k;
    return i < toks_.size() ? toks_[i] : toks_.back();
  }
  const Token& next() {
    const Token& t = peek();
    if (pos_ < toks_.size() - 1) ++pos_;
    return t;
  }
  bool is_op(const char* op, size_t k = 0) const {
    return peek(k).kind == TokKind::OP && peek(k).text == op;
  }
  bool is_name(const char* name, size_t k = 0) const {
    return peek(k).kind == TokKind::NAME && peek(k).text == name;
  }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokKind::DATA:
        return "template text";
      case TokKind::VAR_BEGIN:
        return "'{{'";
      case TokKind::VAR_END:
        return "'}}'";
      case TokKind::BLOCK_BEGIN:
        return "'{%'";
      case TokKind::BLOCK_END:
        return "'%}'";
      case TokKind::NAME:
        return "'" + t.text + "'";
      case TokKind::INT:
      case TokKind::FLOAT:
        return "number " + t.text;
      case TokKind::STRING:
        return "string literal";
      case TokKind::OP:
        return "'" + t.text + "'";
      case TokKind::END:
        return "end of template";
    }
    return "?";
  }

  template <typename... Args>
  Error error_at(const Token& t, const Args&... args) const {
    return make_error("template line ", t.line, ", column ", t.col, ": ", args...);
  }
  Error unexpected(const std::string& wanted) const {
    return error_at(peek(), "expected ", wanted, ", got ", describe(peek()));
  }
  Status expect_op(const char* op) {
    if (!skip_op(op)) return unexpected(std::string("'") + op + "'");
    return {};
  }
  Status expect_block_end() {
    if (peek().kind != TokKind::BLOCK_END) return unexpected("'%}'");
    next();
    return {};
  }
  Expected<std::string> expect_name() {
    if (peek().kind != TokKind::NAME) return unexpected("a name");
    return next().text;
  }
  Status check_depth() const {
    if (depth_ > max_depth_) {
      return error_at(peek(), "nesting deeper than ", max_depth_, " levels");
    }
    return {};
  }

  ExprPtr make(ExprKind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->col = at.col;
    return e;
  }

  // ---- statements ----

  // Parses until one of `ends` opens a block tag ({% name ...); leaves pos_ after that name.
  Expected<Body> parse_body(const std::set<std::string>& ends, std::string* end_tag) {
    DepthGuard g(depth_);
    REALM_TRY(check_depth());
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.kind == TokKind::END) {
        if (!ends.empty()) {
          std::string list;
          for (const auto& e : ends) list += (list.empty() ? "'" : " or '") + e + "'";
          return error_at(t, "unexpected end of template, expected ", list);
        }
        return body;
      }
      if (t.kind == TokKind::DATA) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::TEXT;
        s->line = t.line;
        s->col = t.col;
        s->text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.kind == TokKind::VAR_BEGIN) {
        next();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::OUTPUT;
        s->line = t.line;
        s->col = t.col;
        auto e = parse_tuple_or_expr();
        if (!e) return e.take_error();
        s->exprs.push_back(std::move(*e));
        if (peek().kind != TokKind::VAR_END) return unexpected("'}}'");
        next();
        body.push_back(std::move(s));
      } else if (t.kind == TokKind::BLOCK_BEGIN) {
        next();
        if (peek().kind != TokKind::NAME) return unexpected("a statement name");
        const Token& name_tok = peek();
        const std::string& name = name_tok.text;
        if (ends.count(name)) {
          next();
          *end_tag = name;
          return body;
        }
        auto s = parse_statement();
        if (!s) return s.take_error();
        body.push_back(std::move(*s));
      } else {
        return unexpected("template text or a tag");
      }
    }
  }

  Expected<StmtPtr> parse_statement() {
    const Token& t = peek();
    auto s = std::make_unique<Stmt>();
    s->line = t.line;
    s->col = t.col;
    const std::string name = t.text;
    next();
    if (name == "if") {
      s->kind = StmtKind::IF;
      while (true) {
        auto cond = parse_tuple_or_expr();
        if (!cond) return cond.take_error();
        s->exprs.push_back(std::move(*cond));
        REALM_TRY(expect_block_end());
        std::string end;
        auto body = parse_body({"elif", "else", "endif"}, &end);
        if (!body) return body.take_error();
        s->bodies.push_back(std::move(*body));
        if (end == "elif") continue;
        if (end == "else") {
          REALM_TRY(expect_block_end());
          auto else_body = parse_body({"endif"}, &end);
          if (!else_body) return else_body.take_error();
          s->bodies.push_back(std::move(*else_body));
        }
        REALM_TRY(expect_block_end());
        return s;
      }
    }
    if (name == "for") {
      s->kind = StmtKind::FOR;
      do {
        auto target = expect_name();
        if (!target) return target.take_error();
        s->targets.push_back(*target);
      } while (skip_op(","));
      if (!skip_name("in")) return unexpected("'in'");
      // The iterable: no conditional expression (its `if` is the loop filter).
      auto iter = parse_or();
      if (!iter) return iter.take_error();
      if (is_op(",")) return error_at(peek(), "tuple iterables are not supported");
      s->exprs.push_back(std::move(*iter));
      if (skip_name("if")) {
        auto filter = parse_expression();
        if (!filter) return filter.take_error();
        s->exprs.push_back(std::move(*filter));
      }
      if (is_name("recursive")) return error_at(peek(), "recursive loops are not supported");
      REALM_TRY(expect_block_end());
      std::string end;
      auto body = parse_body({"else", "endfor"}, &end);
      if (!body) return body.take_error();
      s->bodies.push_back(std::move(*body));
      s->bodies.emplace_back();
      if (end == "else") {
        REALM_TRY(expect_block_end());
        auto else_body = parse_body({"endfor"}, &end);
        if (!else_body) return else_body.take_error();
        s->bodies.back() = std::move(*else_body);
      }
      REALM_TRY(expect_block_end());
      return s;
    }
    if (name == "set") {
      auto target = expect_name();
      if (!target) return target.take_error();
      s->targets.push_back(*target);
      if (skip_op(".")) {
        auto attr = expect_name();
        if (!attr) return attr.take_error();
        s->text = *attr;
      } else {
        while (skip_op(",")) {
          auto more = expect_name();
          if (!more) return more.take_error();
          s->targets.push_back(*more);
        }
      }
      if (peek().kind == TokKind::BLOCK_END) {
        if (s->targets.size() != 1 || !s->text.empty()) {
          return error_at(peek(), "block set needs a single name");
        }
        next();
        s->kind = StmtKind::SET_BLOCK;
        std::string end;
        auto body = parse_body({"endset"}, &end);
        if (!body) return body.take_error();
        s->bodies.push_back(std::move(*body));
        REALM_TRY(expect_block_end());
        return s;
      }
      s->kind = StmtKind::SET;
      REALM_TRY(expect_op("="));
      auto value = parse_tuple_or_expr();
      if (!value) return value.take_error();
      s->exprs.push_back(std::move(*value));
      REALM_TRY(expect_block_end());
      return s;
    }
    if (name == "macro") {
      s->kind = StmtKind::MACRO;
      auto mname = expect_name();
      if (!mname) return mname.take_error();
      s->text = *mname;
      REALM_TRY(expect_op("("));
      while (!is_op(")")) {
        if (!s->targets.empty()) REALM_TRY(expect_op(","));
        auto param = expect_name();
        if (!param) return param.take_error();
        s->targets.push_back(*param);
        if (skip_op("=")) {
          auto def = parse_expression();
          if (!def) return def.take_error();
          s->exprs.push_back(std::move(*def));
        } else {
          s->exprs.push_back(nullptr);
        }
      }
      next();
      REALM_TRY(expect_block_end());
      std::string end;
      auto body = parse_body({"endmacro"}, &end);
      if (!body) return body.take_error();
      s->bodies.push_back(std::move(*body));
      if (peek().kind == TokKind::NAME) next();  // {% endmacro name %}
      REALM_TRY(expect_block_end());
      return s;
    }
    if (name == "generation") {
      // transformers' AssistantTracker tag: renders its body (in a scope of its own).
      s->kind = StmtKind::SCOPE;
      REALM_TRY(expect_block_end());
      std::string end;
      auto body = parse_body({"endgeneration"}, &end);
      if (!body) return body.take_error();
      s->bodies.push_back(std::move(*body));
      REALM_TRY(expect_block_end());
      return s;
    }
    if (name == "break" || name == "continue") {
      s->kind = name == "break" ? StmtKind::BREAK : StmtKind::CONTINUE;
      REALM_TRY(expect_block_end());
      return s;
    }
    return error_at(t, "unsupported statement '", name, "'");
  }

  // ---- expressions ----

  // An expression, or a bare tuple `a, b` (as in `{% set a, b = 1, 2 %}`).
  Expected<ExprPtr> parse_tuple_or_expr() {
    const Token& at = peek();
    auto first = parse_expression();
    if (!first) return first;
    if (!is_op(",")) return first;
    auto tuple = make(ExprKind::TUPLE, at);
    tuple->args.push_back(std::move(*first));
    while (skip_op(",")) {
      if (peek().kind == TokKind::BLOCK_END || peek().kind == TokKind::VAR_END) break;
      auto e = parse_expression();
      if (!e) return e;
      tuple->args.push_back(std::move(*e));
    }
    return tuple;
  }

  Expected<ExprPtr> parse_expression() {
    DepthGuard g(depth_);
    REALM_TRY(check_depth());
    const Token& at = peek();
    auto e = parse_or();
    if (!e) return e;
    ExprPtr expr = std::move(*e);
    while (skip_name("if")) {
      auto cond = parse_or();
      if (!cond) return cond;
      auto node = make(ExprKind::COND, at);
      node->args.push_back(std::move(expr));
      node->args.push_back(std::move(*cond));
      if (skip_name("else")) {
        auto other = parse_expression();
        if (!other) return other;
        node->args.push_back(std::move(*other));
      } else {
        node->args.push_back(nullptr);
      }
      expr = std::move(node);
    }
    return expr;
  }

  // A left-associative chain `sub (op sub)*` where `at_op` says whether the next token is one of
  // the level's operators: BINARY nodes named after the operator's text.
  template <class Sub, class AtOp>
  Expected<ExprPtr> left_assoc(Sub sub, AtOp at_op) {
    auto left = sub();
    if (!left) return left;
    ExprPtr e = std::move(*left);
    while (at_op()) {
      const Token& at = next();
      auto right = sub();
      if (!right) return right;
      auto node = make(ExprKind::BINARY, at);
      node->name = at.text;
      node->args.push_back(std::move(e));
      node->args.push_back(std::move(*right));
      e = std::move(node);
    }
    return e;
  }

  Expected<ExprPtr> parse_or() {
    return left_assoc([&] { return parse_and(); }, [&] { return is_name("or"); });
  }

  Expected<ExprPtr> parse_and() {
    return left_assoc([&] { return parse_not(); }, [&] { return is_name("and"); });
  }

  Expected<ExprPtr> parse_not() {
    DepthGuard g(depth_);
    REALM_TRY(check_depth());
    if (is_name("not")) {
      const Token& at = next();
      auto operand = parse_not();
      if (!operand) return operand;
      auto node = make(ExprKind::UNARY, at);
      node->name = "not";
      node->args.push_back(std::move(*operand));
      return node;
    }
    return parse_compare();
  }

  Expected<ExprPtr> parse_compare() {
    const Token& at = peek();
    auto first = parse_math1();
    if (!first) return first;
    ExprPtr node;
    while (true) {
      std::string op;
      if (peek().kind == TokKind::OP &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == ">" ||
           peek().text == "<=" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      auto right = parse_math1();
      if (!right) return right;
      if (!node) {
        node = make(ExprKind::COMPARE, at);
        node->args.push_back(std::move(*first));
      }
      node->ops.push_back(op);
      node->args.push_back(std::move(*right));
    }
    if (!node) return std::move(*first);
    return node;
  }

  Expected<ExprPtr> parse_math1() {
    return left_assoc([&] { return parse_concat(); }, [&] { return is_op("+") || is_op("-"); });
  }

  Expected<ExprPtr> parse_concat() {
    return left_assoc([&] { return parse_math2(); }, [&] { return is_op("~"); });
  }

  Expected<ExprPtr> parse_math2() {
    return left_assoc([&] { return parse_pow(); },
                      [&] { return is_op("*") || is_op("/") || is_op("//") || is_op("%"); });
  }

  Expected<ExprPtr> parse_pow() {
    return left_assoc([&] { return parse_unary(true); }, [&] { return is_op("**"); });
  }

  Expected<ExprPtr> parse_unary(bool with_filter) {
    DepthGuard g(depth_);
    REALM_TRY(check_depth());
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const Token& at = next();
      auto operand = parse_unary(false);
      if (!operand) return operand;
      node = make(ExprKind::UNARY, at);
      node->name = at.text;
      node->args.push_back(std::move(*operand));
    } else {
      auto prim = parse_primary();
      if (!prim) return prim;
      auto post = parse_postfix(std::move(*prim));
      if (!post) return post;
      node = std::move(*post);
    }
    if (with_filter) return parse_filter_expr(std::move(node));
    return node;
  }

  Expected<ExprPtr> parse_primary() {
    const Token& t = peek();
    switch (t.kind) {
      case TokKind::NAME: {
        next();
        auto node = make(ExprKind::LITERAL, t);
        if (t.text == "true" || t.text == "True") {
          node->literal = Value::boolean(true);
        } else if (t.text == "false" || t.text == "False") {
          node->literal = Value::boolean(false);
        } else if (t.text == "none" || t.text == "None") {
          node->literal = Value::none();
        } else {
          node->kind = ExprKind::NAME;
          node->name = t.text;
        }
        return node;
      }
      case TokKind::STRING: {
        next();
        std::string s = t.text;
        while (peek().kind == TokKind::STRING) s += next().text;  // adjacent literals join
        auto node = make(ExprKind::LITERAL, t);
        node->literal = Value::string(std::move(s));
        return node;
      }
      case TokKind::INT: {
        next();
        auto node = make(ExprKind::LITERAL, t);
        node->literal = Value::integer(t.ival);
        return node;
      }
      case TokKind::FLOAT: {
        next();
        auto node = make(ExprKind::LITERAL, t);
        node->literal = Value::number(t.fval);
        return node;
      }
      case TokKind::OP:
        if (t.text == "(") {
          next();
          if (skip_op(")")) return make(ExprKind::TUPLE, t);
          auto inner = parse_expression();
          if (!inner) return inner;
          if (is_op(",")) {
            auto tuple = make(ExprKind::TUPLE, t);
            tuple->args.push_back(std::move(*inner));
            while (skip_op(",")) {
              if (is_op(")")) break;
              auto e = parse_expression();
              if (!e) return e;
              tuple->args.push_back(std::move(*e));
            }
            REALM_TRY(expect_op(")"));
            return tuple;
          }
          REALM_TRY(expect_op(")"));
          return std::move(*inner);
        }
        if (t.text == "[") {
          next();
          auto list = make(ExprKind::LIST, t);
          while (!is_op("]")) {
            if (!list->args.empty()) {
              REALM_TRY(expect_op(","));
              if (is_op("]")) break;
            }
            auto e = parse_expression();
            if (!e) return e;
            list->args.push_back(std::move(*e));
          }
          next();
          return list;
        }
        if (t.text == "{") {
          next();
          auto dict = make(ExprKind::DICT, t);
          while (!is_op("}")) {
            if (!dict->args.empty()) {
              REALM_TRY(expect_op(","));
              if (is_op("}")) break;
            }
            auto k = parse_expression();
            if (!k) return k;
            REALM_TRY(expect_op(":"));
            auto v = parse_expression();
            if (!v) return v;
            dict->args.push_back(std::move(*k));
            dict->args.push_back(std::move(*v));
          }
          next();
          return dict;
        }
        break;
      default:
        break;
    }
    return unexpected("an expression");
  }

  Status parse_call_args(Expr& node) {
    // After '(' : positional then keyword arguments, until ')'.
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        REALM_TRY(expect_op(","));
        if (is_op(")")) break;
      }
      first = false;
      if (is_op("*") || is_op("**")) return error_at(peek(), "*args/**kwargs are not supported");
      if (peek().kind == TokKind::NAME && is_op("=", 1)) {
        node.kw_names.push_back(next().text);
        next();
        auto v = parse_expression();
        if (!v) return v.take_error();
        node.kw_values.push_back(std::move(*v));
      } else {
        if (!node.kw_names.empty()) {
          return error_at(peek(), "positional argument after keyword argument");
        }
        auto v = parse_expression();
        if (!v) return v.take_error();
        node.args.push_back(std::move(*v));
      }
    }
    next();
    return {};
  }

  Expected<ExprPtr> parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        const Token& at = next();
        auto node = make(ExprKind::GETATTR, at);
        if (peek().kind == TokKind::NAME) {
          node->name = next().text;
        } else if (peek().kind == TokKind::INT) {
          // foo.0 is foo[0] in Jinja
          node->kind = ExprKind::GETITEM;
          node->args.push_back(std::move(e));
          auto idx = make(ExprKind::LITERAL, peek());
          idx->literal = Value::integer(next().ival);
          node->args.push_back(std::move(idx));
          e = std::move(node);
          continue;
        } else {
          return unexpected("an attribute name");
        }
        node->args.push_back(std::move(e));
        e = std::move(node);
      } else if (is_op("[")) {
        const Token& at = next();
        REALM_TRY(subscript(e, at));
      } else if (is_op("(")) {
        const Token& at = next();
        auto node = make(ExprKind::CALL, at);
        node->args.push_back(std::move(e));
        REALM_TRY(parse_call_args(*node));
        e = std::move(node);
      } else {
        return e;
      }
    }
  }

  // After '[': an index or a slice.
  Status subscript(ExprPtr& e, const Token& at) {
    ExprPtr parts[3];
    bool is_slice = false;
    for (int k = 0; k < 3; ++k) {
      if (k > 0) {
        if (!skip_op(":")) break;
        is_slice = true;
      }
      if (is_op(":") || is_op("]")) continue;
      auto v = parse_expression();
      if (!v) return v.take_error();
      parts[k] = std::move(*v);
    }
    REALM_TRY(expect_op("]"));
    auto node = make(is_slice ? ExprKind::SLICE : ExprKind::GETITEM, at);
    node->args.push_back(std::move(e));
    if (!is_slice) {
      if (!parts[0]) return error_at(at, "empty subscript");
      node->args.push_back(std::move(parts[0]));
    } else {
      for (auto& p : parts) node->args.push_back(std::move(p));
    }
    e = std::move(node);
    return {};
  }

  Expected<ExprPtr> parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        do {
          const Token& at = next();
          auto node = make(ExprKind::FILTER, at);
          auto name = expect_name();
          if (!name) return name.take_error();
          node->name = *name;
          while (skip_op(".")) {  // dotted filter names
            auto more = expect_name();
            if (!more) return more.take_error();
            node->name += "." + *more;
          }
          node->args.push_back(std::move(e));
          if (skip_op("(")) REALM_TRY(parse_call_args(*node));
          e = std::move(node);
        } while (is_op("|"));
      } else if (is_name("is")) {
        const Token& at = next();
        auto node = make(ExprKind::TEST, at);
        node->negated = skip_name("not");
        auto name = expect_name();
        if (!name) return name.take_error();
        node->name = *name;
        node->args.push_back(std::move(e));
        if (skip_op("(")) {
          REALM_TRY(parse_call_args(*node));
        } else if (peek().kind == TokKind::INT || peek().kind == TokKind::FLOAT ||
                   peek().kind == TokKind::STRING || is_op("[") || is_op("{") || is_op("(") ||
                   (peek().kind == TokKind::NAME && !is_name("else") && !is_name("or") &&
                    !is_name("and") && !is_name("if") && !is_name("is") && !is_name("in") &&
                    !is_name("not"))) {
          // One argument without parentheses: `x is divisibleby 3`, `x is sameas false`.
          auto arg = parse_primary();
          if (!arg) return arg;
          auto post = parse_postfix(std::move(*arg));
          if (!post) return post;
          node->args.push_back(std::move(*post));
        }
        e = std::move(node);
      } else if (is_op("(")) {
        const Token& at = next();
        auto node = make(ExprKind::CALL, at);
        node->args.push_back(std::move(e));
        REALM_TRY(parse_call_args(*node));
        e = std::move(node);
      } else {
        return e;
      }
    }
  }

  const std::vector<Token>& toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  int max_depth_;
};

}  // namespace

Expected<Program> parse_program(const std::vector<Token>& tokens, int max_depth) {
  return Parser(tokens, max_depth).run();
}

}  // namespace realm::jinja
