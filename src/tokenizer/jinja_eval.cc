// Jinja evaluator: statements, expressions, filters, tests, and the Python methods templates use.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <limits>

#include "tokenizer/jinja_ast.h"

#define JTRY(var, expr)                          \
  auto var##_res = (expr);                       \
  if (!var##_res) return var##_res.take_error(); \
  auto var = std::move(*var##_res)

namespace realm::jinja {
namespace {

const char* type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::UNDEFINED:
      return "Undefined";
    case Value::Kind::NONE:
      return "NoneType";
    case Value::Kind::BOOL:
      return "bool";
    case Value::Kind::INT:
      return "int";
    case Value::Kind::FLOAT:
      return "float";
    case Value::Kind::STRING:
      return "str";
    case Value::Kind::ARRAY:
      return "list";
    case Value::Kind::OBJECT:
      return v.as_object().is_namespace ? "Namespace" : "dict";
    case Value::Kind::FUNCTION:
      return "function";
  }
  return "?";
}

// Code points of a UTF-8 string, as byte ranges.
std::vector<std::string_view> code_points(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    size_t len;
    decode_utf8(s, i, &len);
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

size_t count_code_points(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Simple (one code point to one code point) case mappings for Latin-1, Latin Extended-A, Greek
// and Cyrillic, like Python's str.upper()/lower() there. Other scripts are left unchanged, and
// so are the special cases Python expands or makes context-dependent (final sigma, U+0130).
char32_t upper_cp(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0xB5) return c;
  if (c == 0xB5) return 0x39C;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 0x20;
  if (c == 0xFF) return 0x178;
  if (c == 0x131) return 'I';
  if (c == 0x17F) return 'S';
  if (c == 0x130) return c;
  if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c & ~char32_t{1};
  if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 0) ? c - 1 : c;
  if (c < 0x370) return c;
  if ((c >= 0x370 && c <= 0x373) || c == 0x376 || c == 0x377) return c & ~char32_t{1};
  if (c >= 0x37B && c <= 0x37D) return c + 0x82;
  if (c >= 0x3B1 && c <= 0x3CB) return c == 0x3C2 ? 0x3A3 : c - 0x20;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 0x25;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 0x3F;
  if (c == 0x3D7) return 0x3CF;
  if (c >= 0x3D8 && c <= 0x3EF) return c & ~char32_t{1};
  switch (c) {
    case 0x3D0:
      return 0x392;
    case 0x3D1:
      return 0x398;
    case 0x3D5:
      return 0x3A6;
    case 0x3D6:
      return 0x3A0;
    case 0x3F0:
      return 0x39A;
    case 0x3F1:
      return 0x3A1;
    case 0x3F2:
      return 0x3F9;
    case 0x3F3:
      return 0x37F;
    case 0x3F5:
      return 0x395;
    case 0x3F8:
      return 0x3F7;
    case 0x3FB:
      return 0x3FA;
    default:
      break;
  }
  if (c >= 0x430 && c <= 0x44F) return c - 0x20;
  if (c >= 0x450 && c <= 0x45F) return c - 0x50;
  if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) return c & ~char32_t{1};
  if (c == 0x4CF) return 0x4C0;
  if (c >= 0x4C1 && c <= 0x4CE) return (c % 2 == 0) ? c - 1 : c;
  if (c >= 0x4D0 && c <= 0x4FF) return c & ~char32_t{1};
  return c;
}

char32_t lower_cp(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0xC0) return c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 0x20;
  if (c == 0x130 || c == 0x131) return c;
  if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c | 1;
  if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
  if (c == 0x178) return 0xFF;
  if (c < 0x370) return c;
  if ((c >= 0x370 && c <= 0x373) || c == 0x376 || c == 0x377) return c | 1;
  if (c >= 0x3FD && c <= 0x3FF) return c - 0x82;
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 0x20;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 0x25;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 0x3F;
  if (c == 0x3CF) return 0x3D7;
  if (c >= 0x3D8 && c <= 0x3EF) return c | 1;
  switch (c) {
    case 0x37F:
      return 0x3F3;
    case 0x3F4:
      return 0x3B8;
    case 0x3F7:
      return 0x3F8;
    case 0x3F9:
      return 0x3F2;
    case 0x3FA:
      return 0x3FB;
    default:
      break;
  }
  if (c >= 0x410 && c <= 0x42F) return c + 0x20;
  if (c >= 0x400 && c <= 0x40F) return c + 0x50;
  if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) return c | 1;
  if (c == 0x4C0) return 0x4CF;
  if (c >= 0x4C1 && c <= 0x4CE) return (c % 2 == 1) ? c + 1 : c;
  if (c >= 0x4D0 && c <= 0x4FF) return c | 1;
  return c;
}

// Python's "cased": has an upper/lower mapping or is a caseless lowercase letter.
bool is_cased(char32_t c) {
  return upper_cp(c) != c || lower_cp(c) != c || c == 0xAA || c == 0xBA || c == 0xDF ||
         c == 0x130 || c == 0x138 || c == 0x149 || c == 0x390 || c == 0x3B0 || c == 0x37A ||
         c == 0x3FC || (c >= 0x3D2 && c <= 0x3D4);
}

void append_upper(std::string& out, char32_t c) {
  if (c == 0xDF) {
    out += "SS";  // Python: 'ß'.upper() == 'SS'
  } else if (c == 0x149) {
    out += "\xCA\xBCN";  // 'ŉ'.upper() == 'ʼN'
  } else if (c == 0x390) {
    out += "\xCE\x99\xCC\x88\xCC\x81";  // 'ΐ'.upper()
  } else if (c == 0x3B0) {
    out += "\xCE\xA5\xCC\x88\xCC\x81";  // 'ΰ'.upper()
  } else {
    append_utf8(out, upper_cp(c));
  }
}

// Title case of one code point (str.title/capitalize): as upper, except ß -> Ss.
void append_title(std::string& out, char32_t c) {
  if (c == 0xDF) {
    out += "Ss";
  } else {
    append_upper(out, c);
  }
}

std::string py_upper(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t len;
    char32_t c = decode_utf8(s, i, &len);
    if (len == 1 && c >= 0x80) {
      out += s[i];  // invalid byte: unchanged
    } else {
      append_upper(out, c);
    }
    i += len;
  }
  return out;
}

std::string py_lower(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  for (size_t i = 0; i < s.size();) {
    size_t len;
    char32_t c = decode_utf8(s, i, &len);
    if (len == 1 && c >= 0x80) {
      out += s[i];
    } else if (c == 0x130) {
      out += "i\xCC\x87";  // 'İ'.lower() == 'i̇'
    } else if (c == 0x3A3) {
      // Final sigma: after a cased letter and not before one.
      bool next_cased = false;
      if (i + len < s.size()) {
        size_t nlen;
        next_cased = is_cased(decode_utf8(s, i + len, &nlen));
      }
      out += prev_cased && !next_cased ? "\xCF\x82" : "\xCF\x83";
    } else {
      append_utf8(out, lower_cp(c));
    }
    prev_cased = is_cased(c);
    i += len;
  }
  return out;
}

// str.strip(chars) with an explicit set of characters.
std::string_view strip_chars(std::string_view s, std::string_view chars, bool left, bool right) {
  auto cps = code_points(chars);
  auto in_set = [&](std::string_view cp) {
    return std::find(cps.begin(), cps.end(), cp) != cps.end();
  };
  auto pts = code_points(s);
  size_t b = 0, e = pts.size();
  if (left) {
    while (b < e && in_set(pts[b])) ++b;
  }
  if (right) {
    while (e > b && in_set(pts[e - 1])) --e;
  }
  if (b == e) return s.substr(0, 0);
  size_t start = static_cast<size_t>(pts[b].data() - s.data());
  size_t end = static_cast<size_t>(pts[e - 1].data() - s.data()) + pts[e - 1].size();
  return s.substr(start, end - start);
}

// str.splitlines() (no keepends).
std::vector<std::string> splitlines(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size();) {
    size_t len;
    char32_t c = decode_utf8(s, i, &len);
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
               c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (brk) {
      out.push_back(std::move(cur));
      cur.clear();
      if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      cur.append(s, i, len);
    }
    i += len;
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                        int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` between code points (and at both ends).
    auto pts = code_points(s);
    int64_t done = 0;
    for (size_t i = 0; i <= pts.size(); ++i) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      if (i < pts.size()) out += pts[i];
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t f = s.find(from, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += to;
    pos = f + from.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
int64_t floor_mod(int64_t a, int64_t b) {
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

enum class Flow { NORMAL, BREAK, CONTINUE };

// Positional + keyword arguments bound by name, like a Python signature.
class Binder {
 public:
  Binder(const CallArgs& args, const char* what) : a_(args), what_(what) {}
  // Argument `i` (after the subject) or keyword `name`; nullptr if absent.
  const Value* get(size_t i, const char* name) const {
    if (i < a_.args.size()) return &a_.args[i];
    for (const auto& [k, v] : a_.kwargs) {
      if (k == name) return &v;
    }
    return nullptr;
  }
  Status check(size_t max_positional, std::initializer_list<const char*> names) const {
    if (a_.args.size() > max_positional) {
      return make_error(what_, "() takes at most ", max_positional, " positional arguments (",
                        a_.args.size(), " given)");
    }
    for (const auto& [k, v] : a_.kwargs) {
      bool ok = false;
      for (const char* n : names) ok = ok || k == n;
      if (!ok) return make_error(what_, "() got an unexpected keyword argument '", k, "'");
    }
    return {};
  }

 private:
  const CallArgs& a_;
  const char* what_;
};

class Renderer {
 public:
  Renderer(const Program& prog, const Limits& limits) : prog_(prog), limits_(limits) {}

  Expected<std::string> run(const Value& context) {
    scopes_.emplace_back();  // globals
    add_globals();
    scopes_.emplace_back();  // the caller's variables
    if (context.is_object()) {
      for (const auto& [k, v] : context.as_object().items) scopes_.back().emplace_back(k, v);
    } else if (!context.is_undefined()) {
      return make_error("template context must be an object, got ", type_name(context));
    }
    push_frame(prog_.body);  // template top level
    JTRY(flow, exec_body(prog_.body));
    (void)flow;
    return std::move(out_);
  }

 private:
  // A variable of a scope, modelled on Jinja's compiled frames. VALUE: assigned. DECLARED: the
  // frame assigns it later and no outer frame knows the name (Jinja's "missing"): the frame
  // itself reads the outer value, nested frames read undefined. REF: the frame only mentions the
  // name (lookups pass through); it makes a nested frame that assigns the name start from the
  // outer value instead of "missing".
  enum class VarState { VALUE, DECLARED, REF };
  struct Var {
    Var(std::string n, Value v, VarState st = VarState::VALUE)
        : name(std::move(n)), value(std::move(v)), state(st) {}
    std::string name;
    Value value;
    VarState state;
  };
  using Scope = std::vector<Var>;
  static constexpr size_t kBaseScopes = 3;

  struct DepthGuard {
    explicit DepthGuard(int& d) : d_(d) { ++d_; }
    ~DepthGuard() { --d_; }
    int& d_;
  };

  template <typename... Args>
  static Error err(const Expr& e, const Args&... args) {
    return make_error("template line ", e.line, ", column ", e.col, ": ", args...);
  }
  template <typename... Args>
  static Error err(const Stmt& s, const Args&... args) {
    return make_error("template line ", s.line, ", column ", s.col, ": ", args...);
  }
  static Error at(const Expr& e, Error error) {
    if (error.message.rfind("template line ", 0) == 0) return error;
    return err(e, error.message);
  }

  Status step() {
    if (++steps_ > limits_.max_steps) {
      return make_error("template exceeded ", limits_.max_steps, " loop iterations and calls");
    }
    return {};
  }
  Status charge(uint64_t bytes) {
    total_bytes_ += bytes;
    if (total_bytes_ > limits_.max_total_bytes) {
      return make_error("template built more than ", limits_.max_total_bytes,
                        " bytes of strings and arrays");
    }
    return {};
  }
  Expected<Value> make_string(std::string s) {
    if (s.size() > limits_.max_output_bytes) {
      return make_error("string of ", s.size(), " bytes exceeds the limit of ",
                        limits_.max_output_bytes);
    }
    REALM_TRY(charge(s.size()));
    return Value::string(std::move(s));
  }
  Expected<Value> make_array(Array a) {
    if (a.size() > limits_.max_array_items) {
      return make_error("list of ", a.size(), " items exceeds the limit of ",
                        limits_.max_array_items);
    }
    REALM_TRY(charge(a.size() * sizeof(Value)));
    Value v = Value::array(std::move(a));
    REALM_TRY(check_depth(v));
    return v;
  }
  Status check_depth(const Value& v) const {
    if (v.depth() > limits_.max_depth) {
      return make_error("value nested deeper than ", limits_.max_depth, " levels");
    }
    return {};
  }
  Status emit(std::string_view s) {
    if (out_.size() + s.size() > limits_.max_output_bytes) {
      return make_error("rendered output exceeds ", limits_.max_output_bytes, " bytes");
    }
    out_ += s;
    return {};
  }

  // ---- scopes ----

  const Value* lookup(const std::string& name) const {
    for (size_t i = scopes_.size(); i-- > 0;) {
      for (const auto& var : scopes_[i]) {
        if (var.name != name) continue;
        if (var.state == VarState::REF) break;
        if (var.state == VarState::DECLARED && i + 1 == scopes_.size()) break;  // own frame
        return &var.value;  // (undefined when DECLARED, seen from a nested frame)
      }
    }
    return nullptr;
  }
  void assign(const std::string& name, Value v) {
    for (auto& var : scopes_.back()) {
      if (var.name == name) {
        var.value = std::move(v);
        var.state = VarState::VALUE;
        return;
      }
    }
    scopes_.back().emplace_back(name, std::move(v));
  }
  // Pushes the scope of a frame that will run `body`, declaring the names the body assigns.
  void push_frame(const Body& body) {
    // Names the frame reads before it assigns them are resolved from outside (no declaration),
    // as Jinja does.
    std::vector<std::string> stored, read_first, mentioned;
    scan_frame(body, stored, read_first, mentioned);
    Scope scope;
    auto has_entry = [&](const std::string& n) {
      for (const auto& var : scope) {
        if (var.name == n) return true;
      }
      return false;
    };
    for (const auto& st : body) {
      std::vector<const std::string*> names;
      if (st->kind == StmtKind::SET && st->text.empty()) {
        for (const auto& t : st->targets) names.push_back(&t);
      } else if (st->kind == StmtKind::SET_BLOCK) {
        names.push_back(&st->targets[0]);
      } else if (st->kind == StmtKind::MACRO) {
        names.push_back(&st->text);
      }
      for (const std::string* n : names) {
        if (has_entry(*n) ||
            std::find(read_first.begin(), read_first.end(), *n) != read_first.end()) {
          continue;
        }
        if (template_frames_mention(*n)) {
          scope.emplace_back(*n, nested_view(*n));  // Jinja aliases the outer frame's variable
        } else {
          scope.emplace_back(*n, Value(), VarState::DECLARED);
        }
      }
    }
    for (const auto& n : mentioned) {
      if (!has_entry(n)) scope.emplace_back(n, Value(), VarState::REF);
    }
    scopes_.push_back(std::move(scope));
  }

  bool template_frames_mention(const std::string& name) const {
    for (size_t i = kBaseScopes - 1; i < scopes_.size(); ++i) {
      for (const auto& var : scopes_[i]) {
        if (var.name == name) return true;
      }
    }
    return false;
  }

  // The value of `name` as a frame nested in the current one sees it.
  Value nested_view(const std::string& name) const {
    for (size_t i = scopes_.size(); i-- > 0;) {
      for (const auto& var : scopes_[i]) {
        if (var.name != name) continue;
        if (var.state == VarState::REF) break;
        return var.value;  // DECLARED holds undefined
      }
    }
    return Value();
  }

  // Walks one frame's statements in order (not nested frames: loop bodies, macros, set blocks),
  // recording assigned names and the names read before their first assignment.
  static void scan_frame(const Body& body, std::vector<std::string>& stored,
                         std::vector<std::string>& read_first,
                         std::vector<std::string>& mentioned) {
    auto has = [](const std::vector<std::string>& v, const std::string& n) {
      return std::find(v.begin(), v.end(), n) != v.end();
    };
    auto store = [&](const std::string& n) {
      if (!has(stored, n)) stored.push_back(n);
      if (!has(mentioned, n)) mentioned.push_back(n);
    };
    std::function<void(const Expr*)> loads = [&](const Expr* e) {
      if (!e) return;
      if (e->kind == ExprKind::NAME && !has(stored, e->name) && !has(read_first, e->name)) {
        read_first.push_back(e->name);
      }
      if (e->kind == ExprKind::NAME && !has(mentioned, e->name)) mentioned.push_back(e->name);
      for (const auto& a : e->args) loads(a.get());
      for (const auto& a : e->kw_values) loads(a.get());
    };
    for (const auto& st : body) {
      switch (st->kind) {
        case StmtKind::OUTPUT:
          loads(st->exprs[0].get());
          break;
        case StmtKind::IF:
          for (const auto& c : st->exprs) loads(c.get());
          for (const auto& b : st->bodies) scan_frame(b, stored, read_first, mentioned);
          break;
        case StmtKind::FOR:
          loads(st->exprs[0].get());
          break;
        case StmtKind::SET:
          loads(st->exprs[0].get());
          if (st->text.empty()) {
            for (const auto& t : st->targets) store(t);
          }
          break;
        case StmtKind::SET_BLOCK:
          store(st->targets[0]);
          break;
        case StmtKind::MACRO:
          store(st->text);
          break;
        default:
          break;
      }
    }
  }

  void add_globals() {
    Scope& g = scopes_[0];
    g.emplace_back("range", Value::function([this](const CallArgs& a) { return fn_range(a); }));
    g.emplace_back("namespace", Value::function([this](const CallArgs& a) -> Expected<Value> {
                     Value ns = Value::object();
                     ns.mutable_object().is_namespace = true;
                     for (const auto& v : a.args) {
                       if (!v.is_object()) return make_error("namespace() takes a dict");
                       for (const auto& [k, x] : v.as_object().items) ns.set(k, x);
                     }
                     for (const auto& [k, x] : a.kwargs) ns.set(k, x);
                     REALM_TRY(check_depth(ns));
                     return ns;
                   }));
    g.emplace_back("dict", Value::function([this](const CallArgs& a) -> Expected<Value> {
                     Value d = Value::object();
                     for (const auto& v : a.args) {
                       if (!v.is_object()) return make_error("dict() takes a dict");
                       for (const auto& [k, x] : v.as_object().items) d.set(k, x);
                     }
                     for (const auto& [k, x] : a.kwargs) d.set(k, x);
                     REALM_TRY(check_depth(d));
                     return d;
                   }));
    g.emplace_back("raise_exception", Value::function([](const CallArgs& a) -> Expected<Value> {
                     std::string msg = a.args.empty() ? "" : a.args[0].to_str();
                     return make_error("raise_exception: ", msg);
                   }));
    g.emplace_back("strftime_now", Value::function([](const CallArgs& a) -> Expected<Value> {
                     if (a.args.size() != 1 || !a.args[0].is_string()) {
                       return make_error("strftime_now() takes one format string");
                     }
                     std::time_t now = std::time(nullptr);
                     std::tm tm{};
                     localtime_r(&now, &tm);
                     char buf[256];
                     size_t n = std::strftime(buf, sizeof buf, a.args[0].as_string().c_str(), &tm);
                     return Value::string(std::string(buf, n));
                   }));
  }

  Expected<Value> fn_range(const CallArgs& a) {
    if (!a.kwargs.empty() || a.args.empty() || a.args.size() > 3) {
      return make_error("range() takes 1 to 3 integer arguments");
    }
    int64_t v[3] = {0, 0, 1};
    for (size_t i = 0; i < a.args.size(); ++i) {
      if (!a.args[i].is_int() && !a.args[i].is_bool()) {
        return make_error("range() argument must be int, not ", type_name(a.args[i]));
      }
    }
    if (a.args.size() == 1) {
      v[1] = a.args[0].as_int();
    } else {
      v[0] = a.args[0].as_int();
      v[1] = a.args[1].as_int();
      if (a.args.size() == 3) v[2] = a.args[2].as_int();
    }
    if (v[2] == 0) return make_error("range() arg 3 must not be zero");
    Array out;
    for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) {
      if (out.size() >= limits_.max_array_items) {
        return make_error("range() of more than ", limits_.max_array_items, " items");
      }
      out.push_back(Value::integer(i));
      if ((v[2] > 0 && i > INT64_MAX - v[2]) || (v[2] < 0 && i < INT64_MIN - v[2])) break;
    }
    return make_array(std::move(out));
  }

  // ---- statements ----

  Expected<Flow> exec_body(const Body& body) {
    for (const auto& s : body) {
      JTRY(flow, exec(*s));
      if (flow != Flow::NORMAL) return flow;
    }
    return Flow::NORMAL;
  }

  Expected<Flow> exec(const Stmt& s) {
    switch (s.kind) {
      case StmtKind::TEXT:
        REALM_TRY(emit(s.text));
        return Flow::NORMAL;
      case StmtKind::OUTPUT: {
        JTRY(v, eval(*s.exprs[0]));
        if (v.is_string()) {
          REALM_TRY(emit(v.as_string()));
        } else {
          REALM_TRY(emit(v.to_str()));
        }
        return Flow::NORMAL;
      }
      case StmtKind::IF:
        for (size_t i = 0; i < s.exprs.size(); ++i) {
          JTRY(c, eval(*s.exprs[i]));
          if (c.truthy()) return exec_body(s.bodies[i]);
        }
        if (s.bodies.size() > s.exprs.size()) return exec_body(s.bodies.back());
        return Flow::NORMAL;
      case StmtKind::FOR:
        return exec_for(s);
      case StmtKind::SET: {
        JTRY(v, eval(*s.exprs[0]));
        if (!s.text.empty()) {
          const Value* ns = lookup(s.targets[0]);
          if (!ns || !ns->is_object() || !ns->as_object().is_namespace) {
            return err(s, "cannot assign attribute on non-namespace object '", s.targets[0], "'");
          }
          if (v.holds_namespace()) {
            return err(s, "storing a namespace inside a namespace is not supported");
          }
          ns->set(s.text, std::move(v));
          if (ns->depth() > limits_.max_depth) {
            return err(s, "value nested deeper than ", limits_.max_depth, " levels");
          }
          return Flow::NORMAL;
        }
        REALM_TRY(unpack_assign(s, s.targets, v));
        return Flow::NORMAL;
      }
      case StmtKind::SET_BLOCK: {
        push_frame(s.bodies[0]);  // sets inside the block stay inside it
        std::string saved = std::move(out_);
        out_.clear();
        auto flow = exec_body(s.bodies[0]);
        std::string captured = std::move(out_);
        out_ = std::move(saved);
        scopes_.pop_back();
        if (!flow) return flow.take_error();
        assign(s.targets[0], Value::string(std::move(captured)));
        return Flow::NORMAL;
      }
      case StmtKind::MACRO: {
        // A macro sees the scopes around its definition (late-bound, like Jinja's closures),
        // not the caller's.
        const Stmt* def = &s;
        size_t def_scopes = scopes_.size();
        assign(s.text, Value::function([this, def, def_scopes](const CallArgs& a) {
                 return call_macro(*def, def_scopes, a);
               }));
        return Flow::NORMAL;
      }
      case StmtKind::SCOPE: {
        push_frame(s.bodies[0]);
        auto flow = exec_body(s.bodies[0]);
        scopes_.pop_back();
        return flow;
      }
      case StmtKind::BREAK:
        return Flow::BREAK;
      case StmtKind::CONTINUE:
        return Flow::CONTINUE;
    }
    return Flow::NORMAL;
  }

  Status unpack_assign(const Stmt& s, const std::vector<std::string>& targets, const Value& v) {
    if (targets.size() == 1) {
      assign(targets[0], v);
      return {};
    }
    if (!v.is_array() || v.as_array().size() != targets.size()) {
      return err(s, "cannot unpack ", type_name(v), " into ", targets.size(), " names");
    }
    for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], v.as_array()[i]);
    return {};
  }

  Expected<Array> iterate(const Value& v) {
    switch (v.kind()) {
      case Value::Kind::UNDEFINED:
        return Array{};
      case Value::Kind::ARRAY:
        return v.as_array();
      case Value::Kind::OBJECT: {
        Array keys;
        for (const auto& [k, x] : v.as_object().items) keys.push_back(Value::string(k));
        return keys;
      }
      case Value::Kind::STRING: {
        Array chars;
        for (auto cp : code_points(v.as_string())) chars.push_back(Value::string(std::string(cp)));
        return chars;
      }
      default:
        return make_error("'", type_name(v), "' object is not iterable");
    }
  }

  Expected<Flow> exec_for(const Stmt& s) {
    auto iter_v = eval(*s.exprs[0]);
    if (!iter_v) return iter_v.take_error();
    auto items_r = iterate(*iter_v);
    if (!items_r) return err(*s.exprs[0], items_r.error().message);
    Array items = std::move(*items_r);
    if (s.exprs.size() > 1) {  // {% for x in xs if cond %}: filter before counting
      Array kept;
      for (const auto& item : items) {
        REALM_TRY(step());
        scopes_.emplace_back();
        auto st = unpack_assign(s, s.targets, item);
        auto c = st ? eval(*s.exprs[1]) : Expected<Value>(st.take_error());
        scopes_.pop_back();
        if (!c) return c.take_error();
        if (c->truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const size_t n = items.size();
    bool run_else = true;
    for (size_t i = 0; i < n; ++i) {
      REALM_TRY(step());
      push_frame(s.bodies[0]);
      Value loop = Value::object();
      loop.set("index", Value::integer(static_cast<int64_t>(i + 1)));
      loop.set("index0", Value::integer(static_cast<int64_t>(i)));
      loop.set("revindex", Value::integer(static_cast<int64_t>(n - i)));
      loop.set("revindex0", Value::integer(static_cast<int64_t>(n - i - 1)));
      loop.set("first", Value::boolean(i == 0));
      loop.set("last", Value::boolean(i + 1 == n));
      loop.set("length", Value::integer(static_cast<int64_t>(n)));
      loop.set("depth", Value::integer(1));
      loop.set("depth0", Value::integer(0));
      loop.set("previtem", i > 0 ? items[i - 1] : Value());
      loop.set("nextitem", i + 1 < n ? items[i + 1] : Value());
      loop.set("cycle", Value::function([i](const CallArgs& a) -> Expected<Value> {
                 if (a.args.empty()) return make_error("no items for cycling given");
                 return a.args[i % a.args.size()];
               }));
      assign("loop", loop);
      auto st = unpack_assign(s, s.targets, items[i]);
      auto flow = st ? exec_body(s.bodies[0]) : Expected<Flow>(st.take_error());
      scopes_.pop_back();
      if (!flow) return flow.take_error();
      if (*flow == Flow::BREAK) break;
      // Jinja clears its "no iteration" flag at the end of the body, so an iteration that
      // ends in `continue` does not count.
      if (*flow == Flow::NORMAL) run_else = false;
    }
    if (run_else && !s.bodies[1].empty()) {
      push_frame(s.bodies[1]);
      auto flow = exec_body(s.bodies[1]);
      scopes_.pop_back();
      if (!flow) return flow.take_error();
    }
    return Flow::NORMAL;
  }

  Expected<Value> call_macro(const Stmt& def, size_t def_scopes, const CallArgs& a) {
    REALM_TRY(step());
    if (depth_ > limits_.max_depth) {
      return err(def, "macro '", def.text, "' recursed deeper than ", limits_.max_depth);
    }
    DepthGuard g(depth_);
    if (a.args.size() > def.targets.size()) {
      return err(def, "macro '", def.text, "' takes ", def.targets.size(), " arguments, got ",
                 a.args.size());
    }
    Scope local;
    for (size_t i = 0; i < def.targets.size(); ++i) {
      const Value* given = i < a.args.size() ? &a.args[i] : nullptr;
      for (const auto& [k, v] : a.kwargs) {
        if (k == def.targets[i]) given = &v;
      }
      if (given) {
        local.emplace_back(def.targets[i], *given);
      } else if (def.exprs[i]) {
        JTRY(dv, eval(*def.exprs[i]));
        local.emplace_back(def.targets[i], dv);
      } else {
        local.emplace_back(def.targets[i], Value());
      }
    }
    for (const auto& [k, v] : a.kwargs) {
      if (std::find(def.targets.begin(), def.targets.end(), k) == def.targets.end()) {
        return err(def, "macro '", def.text, "' got an unexpected keyword argument '", k, "'");
      }
    }
    const size_t keep = std::clamp(def_scopes, kBaseScopes, scopes_.size());
    std::vector<Scope> saved(std::make_move_iterator(scopes_.begin() + keep),
                             std::make_move_iterator(scopes_.end()));
    scopes_.resize(keep);
    push_frame(def.bodies[0]);
    for (auto& var : local) {  // parameters (they replace declarations of the same names)
      bool replaced = false;
      for (auto& d : scopes_.back()) {
        if (d.name == var.name) {
          d = std::move(var);
          replaced = true;
          break;
        }
      }
      if (!replaced) scopes_.back().push_back(std::move(var));
    }
    std::string saved_out = std::move(out_);
    out_.clear();
    auto flow = exec_body(def.bodies[0]);
    std::string result = std::move(out_);
    out_ = std::move(saved_out);
    scopes_.resize(keep);
    for (auto& sc : saved) scopes_.push_back(std::move(sc));
    if (!flow) return flow.take_error();
    return Value::string(std::move(result));
  }

  // ---- expressions ----

  Expected<Value> eval(const Expr& e) {
    if (depth_ > limits_.max_depth) {
      return err(e, "expression nested deeper than ", limits_.max_depth, " levels");
    }
    DepthGuard g(depth_);
    switch (e.kind) {
      case ExprKind::LITERAL:
        return e.literal;
      case ExprKind::NAME: {
        const Value* v = lookup(e.name);
        return v ? *v : Value();
      }
      case ExprKind::GETATTR: {
        JTRY(obj, eval(*e.args[0]));
        if (obj.is_undefined()) {
          return err(e, "'", describe_expr(*e.args[0]), "' is undefined (getting attribute '",
                     e.name, "')");
        }
        if (const Value* v = obj.get(e.name)) return *v;
        return Value();
      }
      case ExprKind::GETITEM: {
        JTRY(obj, eval(*e.args[0]));
        JTRY(key, eval(*e.args[1]));
        auto r = get_item(obj, key);
        if (!r) return at(e, r.take_error());
        return r;
      }
      case ExprKind::SLICE:
        return eval_slice(e);
      case ExprKind::CALL:
        return eval_call(e);
      case ExprKind::FILTER: {
        JTRY(subject, eval(*e.args[0]));
        JTRY(args, eval_args(e, 1));
        auto r = apply_filter(e.name, subject, args);
        if (!r) return at(e, r.take_error());
        return r;
      }
      case ExprKind::TEST: {
        Value subject;
        if (e.name == "defined" || e.name == "undefined") {
          // Attribute access on an undefined value is an error elsewhere, but `is defined` asks.
          auto s = eval(*e.args[0]);
          if (s)
            subject = std::move(*s);
          else if (e.args[0]->kind != ExprKind::GETATTR)
            return s.take_error();
        } else {
          JTRY(s, eval(*e.args[0]));
          subject = std::move(s);
        }
        JTRY(args, eval_args(e, 1));
        auto r = apply_test(e.name, subject, args.args);
        if (!r) return at(e, r.take_error());
        return Value::boolean(*r != e.negated);
      }
      case ExprKind::UNARY: {
        JTRY(v, eval(*e.args[0]));
        if (e.name == "not") return Value::boolean(!v.truthy());
        if (!v.is_number())
          return err(e, "bad operand type for unary ", e.name, ": '", type_name(v), "'");
        if (e.name == "+") return v.is_bool() ? Value::integer(v.as_int()) : v;
        if (v.is_float()) return Value::number(-v.as_double());
        if (v.as_int() == INT64_MIN) return err(e, "integer overflow");
        return Value::integer(-v.as_int());
      }
      case ExprKind::BINARY: {
        if (e.name == "and" || e.name == "or") {
          JTRY(l, eval(*e.args[0]));
          if ((e.name == "and") != l.truthy()) return l;
          return eval(*e.args[1]);
        }
        JTRY(l, eval(*e.args[0]));
        JTRY(r, eval(*e.args[1]));
        auto res = binary(e.name, l, r);
        if (!res) return at(e, res.take_error());
        return res;
      }
      case ExprKind::COMPARE: {
        JTRY(l, eval(*e.args[0]));
        for (size_t i = 0; i < e.ops.size(); ++i) {
          JTRY(r, eval(*e.args[i + 1]));
          auto c = compare(e.ops[i], l, r);
          if (!c) return at(e, c.take_error());
          if (!*c) return Value::boolean(false);
          l = std::move(r);
        }
        return Value::boolean(true);
      }
      case ExprKind::COND: {
        JTRY(c, eval(*e.args[1]));
        if (c.truthy()) return eval(*e.args[0]);
        if (e.args[2]) return eval(*e.args[2]);
        return Value();
      }
      case ExprKind::LIST:
      case ExprKind::TUPLE: {
        Array items;
        for (const auto& a : e.args) {
          JTRY(v, eval(*a));
          items.push_back(std::move(v));
        }
        JTRY(list, make_array(std::move(items)));
        if (e.kind == ExprKind::TUPLE) return Value::tuple(list.as_array());
        return list;
      }
      case ExprKind::DICT: {
        Value d = Value::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          JTRY(k, eval(*e.args[i]));
          JTRY(v, eval(*e.args[i + 1]));
          if (!k.is_string())
            return err(e, "only string dict keys are supported, got ", type_name(k));
          d.set(k.as_string(), std::move(v));
        }
        auto st = check_depth(d);
        if (!st) return err(e, st.error().message);
        return d;
      }
    }
    return err(e, "unsupported expression");
  }

  static std::string describe_expr(const Expr& e) {
    if (e.kind == ExprKind::NAME) return e.name;
    if (e.kind == ExprKind::GETATTR) return describe_expr(*e.args[0]) + "." + e.name;
    return "value";
  }

  Expected<CallArgs> eval_args(const Expr& e, size_t first) {
    CallArgs a;
    for (size_t i = first; i < e.args.size(); ++i) {
      JTRY(v, eval(*e.args[i]));
      a.args.push_back(std::move(v));
    }
    for (size_t i = 0; i < e.kw_names.size(); ++i) {
      JTRY(v, eval(*e.kw_values[i]));
      a.kwargs.emplace_back(e.kw_names[i], std::move(v));
    }
    return a;
  }

  Expected<Value> get_item(const Value& obj, const Value& key) {
    switch (obj.kind()) {
      case Value::Kind::UNDEFINED:
        return make_error("cannot index an undefined value with ", key.repr());
      case Value::Kind::ARRAY:
      case Value::Kind::STRING: {
        if (!key.is_int() && !key.is_bool()) return Value();
        int64_t i = key.as_int();
        if (obj.is_array()) {
          int64_t n = static_cast<int64_t>(obj.as_array().size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return Value();
          return obj.as_array()[static_cast<size_t>(i)];
        }
        auto pts = code_points(obj.as_string());
        int64_t n = static_cast<int64_t>(pts.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value();
        return Value::string(std::string(pts[static_cast<size_t>(i)]));
      }
      case Value::Kind::OBJECT: {
        if (!key.is_string()) return Value();
        const Value* v = obj.get(key.as_string());
        return v ? *v : Value();
      }
      default:
        return Value();
    }
  }

  Expected<Value> eval_slice(const Expr& e) {
    JTRY(obj, eval(*e.args[0]));
    int64_t parts[3] = {0, 0, 1};
    bool given[3] = {false, false, false};
    for (int k = 0; k < 3; ++k) {
      if (!e.args[1 + k]) continue;
      JTRY(v, eval(*e.args[1 + k]));
      if (v.is_none()) continue;
      if (!v.is_int() && !v.is_bool()) return err(e, "slice indices must be integers or None");
      parts[k] = v.as_int();
      given[k] = true;
    }
    if (parts[2] == 0) return err(e, "slice step cannot be zero");
    std::vector<std::string_view> pts;
    int64_t n;
    if (obj.is_array()) {
      n = static_cast<int64_t>(obj.as_array().size());
    } else if (obj.is_string()) {
      pts = code_points(obj.as_string());
      n = static_cast<int64_t>(pts.size());
    } else {
      return Value();  // Jinja: subscripting what cannot be subscripted gives undefined
    }
    int64_t step = parts[2];
    auto norm = [&](int64_t v, bool is_given, int64_t dflt) {
      if (!is_given) return dflt;
      if (v < 0) v += n;
      if (step > 0) return std::clamp<int64_t>(v, 0, n);
      return std::clamp<int64_t>(v, -1, n - 1);
    };
    int64_t start = norm(parts[0], given[0], step > 0 ? 0 : n - 1);
    int64_t stop = norm(parts[1], given[1], step > 0 ? n : -1);
    std::vector<size_t> idx;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
      idx.push_back(static_cast<size_t>(i));
    if (obj.is_array()) {
      Array out;
      for (size_t i : idx) out.push_back(obj.as_array()[i]);
      JTRY(list, make_array(std::move(out)));
      return obj.is_tuple() ? Value::tuple(list.as_array()) : list;
    }
    std::string out;
    for (size_t i : idx) out += pts[i];
    return make_string(std::move(out));
  }

  Expected<Value> eval_call(const Expr& e) {
    REALM_TRY(step());
    const Expr& callee = *e.args[0];
    JTRY(args, eval_args(e, 1));
    if (callee.kind == ExprKind::GETATTR) {
      JTRY(obj, eval(*callee.args[0]));
      if (obj.is_undefined()) {
        return err(e, "'", describe_expr(*callee.args[0]), "' is undefined (calling '", callee.name,
                   "')");
      }
      bool is_method = false;
      auto r = call_method(obj, callee.name, args, &is_method);
      if (is_method) {
        if (!r) return at(e, r.take_error());
        return r;
      }
      const Value* f = obj.get(callee.name);
      if (!f || !f->is_function()) {
        return err(e, "'", type_name(obj), "' object has no method '", callee.name, "'");
      }
      auto res = f->as_function()(args);
      if (!res) return at(e, res.take_error());
      return res;
    }
    JTRY(f, eval(callee));
    if (!f.is_function()) {
      if (f.is_undefined()) return err(e, "'", describe_expr(callee), "' is undefined");
      return err(e, "'", type_name(f), "' object is not callable");
    }
    auto res = f.as_function()(args);
    if (!res) return at(e, res.take_error());
    return res;
  }

  // Python methods of str, dict and list. Sets *found when `name` is a method of obj's type.
  Expected<Value> call_method(const Value& obj, const std::string& name, const CallArgs& a,
                              bool* found) {
    *found = true;
    Binder b(a, name.c_str());
    if (obj.is_string()) {
      const std::string& s = obj.as_string();
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        REALM_TRY(b.check(1, {}));
        bool l = name != "rstrip", r = name != "lstrip";
        const Value* chars = b.get(0, "chars");
        if (chars && chars->is_string())
          return Value::string(std::string(strip_chars(s, chars->as_string(), l, r)));
        return Value::string(std::string(py_strip(s, l, r)));
      }
      if (name == "upper") return Value::string(py_upper(s));
      if (name == "lower") return Value::string(py_lower(s));
      if (name == "title") return Value::string(py_title(s));
      if (name == "capitalize") return Value::string(capitalize(s));
      if (name == "startswith" || name == "endswith") {
        REALM_TRY(b.check(1, {}));
        const Value* p = b.get(0, "");
        if (!p) return make_error(name, "() takes at least 1 argument");
        std::vector<std::string> prefixes;
        if (p->is_string()) {
          prefixes.push_back(p->as_string());
        } else if (p->is_array()) {
          for (const auto& x : p->as_array()) {
            if (!x.is_string()) return make_error(name, "() tuple must hold strings");
            prefixes.push_back(x.as_string());
          }
        } else {
          return make_error(name, "() argument must be str or a tuple of str");
        }
        for (const auto& pre : prefixes) {
          bool hit = name == "startswith"
                         ? s.compare(0, pre.size(), pre) == 0 && s.size() >= pre.size()
                         : s.size() >= pre.size() &&
                               s.compare(s.size() - pre.size(), pre.size(), pre) == 0;
          if (hit) return Value::boolean(true);
        }
        return Value::boolean(false);
      }
      if (name == "split" || name == "rsplit") {
        REALM_TRY(b.check(2, {"sep", "maxsplit"}));
        const Value* sep = b.get(0, "sep");
        const Value* maxv = b.get(1, "maxsplit");
        int64_t maxsplit = maxv && maxv->is_int() ? maxv->as_int() : -1;
        return split(s, sep && !sep->is_none() ? sep : nullptr, maxsplit, name == "rsplit");
      }
      if (name == "splitlines") {
        Array out;
        for (auto& l : splitlines(s)) out.push_back(Value::string(std::move(l)));
        return make_array(std::move(out));
      }
      if (name == "replace") {
        REALM_TRY(b.check(3, {"count"}));
        const Value* from = b.get(0, "old");
        const Value* to = b.get(1, "new");
        const Value* count = b.get(2, "count");
        if (!from || !to || !from->is_string() || !to->is_string()) {
          return make_error("replace() arguments must be str");
        }
        return make_string(replace_all(s, from->as_string(), to->as_string(),
                                       count && count->is_int() ? count->as_int() : -1));
      }
      if (name == "find" || name == "rfind" || name == "count" || name == "index") {
        const Value* sub = b.get(0, "sub");
        if (!sub || !sub->is_string()) return make_error(name, "() argument must be str");
        const std::string& t = sub->as_string();
        if (name == "count") {
          if (t.empty()) return Value::integer(static_cast<int64_t>(count_code_points(s) + 1));
          int64_t c = 0;
          for (size_t p = s.find(t); p != std::string::npos; p = s.find(t, p + t.size())) ++c;
          return Value::integer(c);
        }
        size_t p = name == "rfind" ? s.rfind(t) : s.find(t);
        if (p == std::string::npos) {
          if (name == "index") return make_error("substring not found");
          return Value::integer(-1);
        }
        return Value::integer(
            static_cast<int64_t>(count_code_points(std::string_view(s).substr(0, p))));
      }
      if (name == "join") {
        const Value* items = b.get(0, "iterable");
        if (!items) return make_error("join() takes one argument");
        JTRY(list, iterate(*items));
        std::string out;
        for (size_t i = 0; i < list.size(); ++i) {
          if (!list[i].is_string()) {
            return make_error("sequence item ", i, ": expected str instance, ", type_name(list[i]),
                              " found");
          }
          if (i) out += s;
          out += list[i].as_string();
          if (out.size() > limits_.max_output_bytes) return make_error("join() result too large");
        }
        return make_string(std::move(out));
      }
      if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" ||
          name == "isupper" || name == "islower") {
        return Value::boolean(str_predicate(s, name));
      }
      *found = false;
      return Value();
    }
    if (obj.is_object() && !obj.as_object().is_namespace) {
      if (name == "items" || name == "keys" || name == "values") {
        REALM_TRY(b.check(0, {}));
        Array out;
        for (const auto& [k, v] : obj.as_object().items) {
          if (name == "items")
            out.push_back(Value::tuple({Value::string(k), v}));
          else if (name == "keys")
            out.push_back(Value::string(k));
          else
            out.push_back(v);
        }
        return make_array(std::move(out));
      }
      if (name == "get") {
        REALM_TRY(b.check(2, {}));
        const Value* k = b.get(0, "key");
        const Value* d = b.get(1, "default");
        if (!k) return make_error("get() takes at least 1 argument");
        if (k->is_string()) {
          if (const Value* v = obj.get(k->as_string())) return *v;
        }
        return d ? *d : Value::none();
      }
      if (obj.get(name)) {
        *found = false;
        return Value();
      }
      if (name == "update" || name == "pop" || name == "setdefault" || name == "clear" ||
          name == "popitem") {
        return make_error("dict.", name, "() modifies a value; templates are immutable");
      }
    }
    if (obj.is_array()) {
      if (name == "index" || name == "count") {
        const Value* x = b.get(0, "value");
        if (!x) return make_error(name, "() takes one argument");
        int64_t c = 0;
        const Array& arr = obj.as_array();
        for (size_t i = 0; i < arr.size(); ++i) {
          if (values_equal(arr[i], *x)) {
            if (name == "index") return Value::integer(static_cast<int64_t>(i));
            ++c;
          }
        }
        if (name == "index") return make_error("value is not in list");
        return Value::integer(c);
      }
      if (name == "append" || name == "pop" || name == "extend" || name == "insert" ||
          name == "remove" || name == "sort" || name == "reverse" || name == "clear") {
        return make_error("list.", name, "() modifies a value; templates are immutable");
      }
    }
    *found = false;
    return Value();
  }

  static bool str_predicate(const std::string& s, const std::string& name) {
    if (s.empty()) return false;
    bool any_cased = false;
    for (unsigned char c : s) {
      bool digit = c >= '0' && c <= '9', upper = c >= 'A' && c <= 'Z', lower = c >= 'a' && c <= 'z';
      bool alpha = upper || lower;
      if (name == "isdigit" && !digit) return false;
      if (name == "isalpha" && !alpha) return false;
      if (name == "isalnum" && !alpha && !digit) return false;
      if (name == "isspace" && !py_isspace(c)) return false;
      if (name == "isupper" && lower) return false;
      if (name == "islower" && upper) return false;
      any_cased = any_cased || alpha;
    }
    if (name == "isupper" || name == "islower") return any_cased;
    return true;
  }

  // Python str.capitalize(): first code point upper, the rest lower.
  static std::string capitalize(const std::string& s) {
    if (s.empty()) return s;
    size_t len;
    char32_t c = decode_utf8(s, 0, &len);
    std::string out;
    append_title(out, c);
    return out + py_lower(std::string_view(s).substr(len));
  }

  // Python str.title(): a cased letter after an uncased character is upper, others lower.
  static std::string py_title(const std::string& s) {
    std::string out;
    bool prev_cased = false;
    for (size_t i = 0; i < s.size();) {
      size_t len;
      char32_t c = decode_utf8(s, i, &len);
      if (is_cased(c)) {
        if (prev_cased) {
          out += py_lower(std::string_view(s).substr(i, len));
        } else {
          append_title(out, c);
        }
        prev_cased = true;
      } else {
        out.append(s, i, len);
        prev_cased = false;
      }
      i += len;
    }
    return out;
  }

  Expected<Value> split(const std::string& s, const Value* sep, int64_t maxsplit, bool from_right) {
    std::vector<std::string> parts;
    if (!sep) {
      // Runs of whitespace; no empty strings.
      std::vector<std::pair<size_t, size_t>> words;
      size_t i = 0;
      while (i < s.size()) {
        size_t len;
        char32_t c = decode_utf8(s, i, &len);
        if (py_isspace(c)) {
          i += len;
          continue;
        }
        size_t start = i;
        while (i < s.size()) {
          c = decode_utf8(s, i, &len);
          if (py_isspace(c)) break;
          i += len;
        }
        words.emplace_back(start, i);
      }
      if (maxsplit < 0 || static_cast<size_t>(maxsplit) + 1 >= words.size()) {
        for (auto [b, e] : words) parts.push_back(s.substr(b, e - b));
      } else if (!from_right) {
        for (size_t k = 0; k < static_cast<size_t>(maxsplit); ++k) {
          parts.push_back(s.substr(words[k].first, words[k].second - words[k].first));
        }
        std::string rest(py_strip(
            std::string_view(s).substr(words[static_cast<size_t>(maxsplit)].first), false, true));
        parts.push_back(rest);
      } else {
        size_t keep = words.size() - static_cast<size_t>(maxsplit);
        std::string head(
            py_strip(std::string_view(s).substr(0, words[keep - 1].second), true, false));
        parts.push_back(head);
        for (size_t k = keep; k < words.size(); ++k) {
          parts.push_back(s.substr(words[k].first, words[k].second - words[k].first));
        }
      }
    } else {
      if (!sep->is_string()) return make_error("split() separator must be str or None");
      const std::string& t = sep->as_string();
      if (t.empty()) return make_error("empty separator");
      if (!from_right) {
        size_t pos = 0;
        int64_t done = 0;
        while (maxsplit < 0 || done < maxsplit) {
          size_t f = s.find(t, pos);
          if (f == std::string::npos) break;
          parts.push_back(s.substr(pos, f - pos));
          pos = f + t.size();
          ++done;
        }
        parts.push_back(s.substr(pos));
      } else {
        size_t end = s.size();
        int64_t done = 0;
        std::vector<std::string> rev;
        while (maxsplit < 0 || done < maxsplit) {
          if (end < t.size()) break;
          size_t f = s.rfind(t, end - t.size());
          if (f == std::string::npos) break;
          rev.push_back(s.substr(f + t.size(), end - f - t.size()));
          end = f;
          ++done;
        }
        rev.push_back(s.substr(0, end));
        parts.assign(rev.rbegin(), rev.rend());
      }
    }
    Array out;
    for (auto& p : parts) out.push_back(Value::string(std::move(p)));
    return make_array(std::move(out));
  }

  // ---- operators ----

  // Python's printf-style `format % args` for %s %r %d %i %f %F %e %E %g %G %x %X %o %c %%
  // with flags (- 0 + space #), width and precision; a tuple gives several arguments.
  Expected<std::string> percent_format(const std::string& fmt, const Value& arg) {
    std::vector<Value> args;
    if (arg.is_tuple()) {
      args = arg.as_array();
    } else {
      args.push_back(arg);
    }
    size_t next = 0;
    std::string out;
    for (size_t i = 0; i < fmt.size(); ++i) {
      if (fmt[i] != '%') {
        out += fmt[i];
        continue;
      }
      size_t j = i + 1;
      if (j < fmt.size() && fmt[j] == '%') {
        out += '%';
        i = j;
        continue;
      }
      if (j < fmt.size() && fmt[j] == '(') return make_error("%(name) formats are not supported");
      std::string spec = "%";
      while (j < fmt.size() && std::strchr("-0+ #", fmt[j])) spec += fmt[j++];
      while (j < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[j]))) spec += fmt[j++];
      if (j < fmt.size() && fmt[j] == '.') {
        spec += fmt[j++];
        while (j < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[j]))) spec += fmt[j++];
      }
      if (spec.size() > 12) return make_error("format specification too long");
      if (j >= fmt.size()) return make_error("incomplete format");
      char type = fmt[j];
      i = j;
      if (next >= args.size()) return make_error("not enough arguments for format string");
      const Value& v = args[next++];
      char buf[512];
      if (type == 's' || type == 'r') {
        std::string text = type == 's' ? v.to_str() : v.repr();
        // Width and precision count code points; keep it simple: bytes for ASCII, else none.
        std::string f = spec + "s";
        if (spec == "%") {
          out += text;
        } else {
          int n = std::snprintf(buf, sizeof buf, f.c_str(), text.c_str());
          if (n < 0 || static_cast<size_t>(n) >= sizeof buf)
            return make_error("formatted value too long");
          out += buf;
        }
        continue;
      }
      if (!v.is_number()) {
        return make_error("%", std::string(1, type), " format: a real number is required, not ",
                          type_name(v));
      }
      int n;
      if (type == 'd' || type == 'i' || type == 'x' || type == 'X' || type == 'o' || type == 'c') {
        int64_t x = v.is_float() ? static_cast<int64_t>(v.as_double()) : v.as_int();
        if (v.is_float() && (!std::isfinite(v.as_double()) || std::fabs(v.as_double()) >= 9.2e18)) {
          return make_error("cannot convert float to integer");
        }
        if (type == 'c') {
          if (x < 0 || x > 0x10FFFF) return make_error("%c arg not in range(0x110000)");
          append_utf8(out, static_cast<char32_t>(x));
          continue;
        }
        std::string f = spec + "ll" + (type == 'i' ? 'd' : type);
        n = std::snprintf(buf, sizeof buf, f.c_str(), static_cast<long long>(x));
      } else if (std::strchr("fFeEgG", type)) {
        std::string f = spec + type;
        n = std::snprintf(buf, sizeof buf, f.c_str(), v.as_double());
      } else {
        return make_error("unsupported format character '", std::string(1, type), "'");
      }
      if (n < 0 || static_cast<size_t>(n) >= sizeof buf)
        return make_error("formatted value too long");
      out += buf;
      if (out.size() > limits_.max_output_bytes) return make_error("formatted string too large");
    }
    // Python lets a mapping-like argument (dict, list) go unused.
    if (next < args.size() && !(!arg.is_tuple() && (arg.is_object() || arg.is_array()))) {
      return make_error("not all arguments converted during string formatting");
    }
    return out;
  }

  Expected<Value> binary(const std::string& op, const Value& l, const Value& r) {
    if (op == "~") return make_string(l.to_str() + r.to_str());
    if (op == "%" && l.is_string() && !r.is_undefined()) {
      JTRY(text, percent_format(l.as_string(), r));
      return make_string(std::move(text));
    }
    if (l.is_undefined() || r.is_undefined()) {
      return make_error("unsupported operand: undefined value in '", op, "'");
    }
    if (op == "+") {
      if (l.is_string() && r.is_string()) {
        if (l.as_string().size() + r.as_string().size() > limits_.max_output_bytes) {
          return make_error("string too large");
        }
        return make_string(l.as_string() + r.as_string());
      }
      if (l.is_array() && r.is_array()) {
        Array out = l.as_array();
        out.insert(out.end(), r.as_array().begin(), r.as_array().end());
        return make_array(std::move(out));
      }
    }
    if (op == "*") {
      const Value* seq = l.is_string() || l.is_array()   ? &l
                         : r.is_string() || r.is_array() ? &r
                                                         : nullptr;
      const Value* cnt = seq == &l ? &r : &l;
      if (seq && (cnt->is_int() || cnt->is_bool())) {
        int64_t n = std::max<int64_t>(cnt->as_int(), 0);
        if (seq->is_string()) {
          const std::string& s = seq->as_string();
          if (!s.empty() && static_cast<uint64_t>(n) > limits_.max_output_bytes / s.size()) {
            return make_error("string repetition too large");
          }
          std::string out;
          for (int64_t i = 0; i < n && !s.empty(); ++i) out += s;
          return make_string(std::move(out));
        }
        const Array& a = seq->as_array();
        if (!a.empty() && static_cast<uint64_t>(n) > limits_.max_array_items / a.size()) {
          return make_error("list repetition too large");
        }
        Array out;
        for (int64_t i = 0; i < n; ++i) out.insert(out.end(), a.begin(), a.end());
        return make_array(std::move(out));
      }
    }
    if (!l.is_number() || !r.is_number()) {
      return make_error("unsupported operand type(s) for ", op, ": '", type_name(l), "' and '",
                        type_name(r), "'");
    }
    bool fl = l.is_float() || r.is_float();
    if (op == "/") {
      if (r.as_double() == 0) return make_error("division by zero");
      return Value::number(l.as_double() / r.as_double());
    }
    if (fl) {
      double a = l.as_double(), b = r.as_double();
      if (op == "+") return Value::number(a + b);
      if (op == "-") return Value::number(a - b);
      if (op == "*") return Value::number(a * b);
      if (op == "**") return Value::number(std::pow(a, b));
      if (b == 0) return make_error("float division by zero");
      if (op == "//") return Value::number(std::floor(a / b));
      if (op == "%") {
        double m = std::fmod(a, b);
        if (m != 0 && ((m < 0) != (b < 0))) m += b;
        return Value::number(m);
      }
    } else {
      int64_t a = l.as_int(), b = r.as_int(), out = 0;
      if (op == "+" && !__builtin_add_overflow(a, b, &out)) return Value::integer(out);
      if (op == "-" && !__builtin_sub_overflow(a, b, &out)) return Value::integer(out);
      if (op == "*" && !__builtin_mul_overflow(a, b, &out)) return Value::integer(out);
      if (op == "//" || op == "%") {
        if (b == 0) return make_error("integer division or modulo by zero");
        if (a == INT64_MIN && b == -1) return make_error("integer overflow");
        return Value::integer(op == "//" ? floor_div(a, b) : floor_mod(a, b));
      }
      if (op == "**") {
        if (b < 0) return Value::number(std::pow(static_cast<double>(a), static_cast<double>(b)));
        int64_t acc = 1;
        bool overflow = false;
        for (int64_t i = 0; i < b && !overflow; ++i) {
          overflow = __builtin_mul_overflow(acc, a, &acc);
          if (acc == 0 || acc == 1) break;
        }
        if (a == -1) acc = (b % 2) ? -1 : 1;
        if (!overflow) return Value::integer(acc);
      }
      return make_error("integer overflow in '", op, "'");
    }
    return make_error("unsupported operator ", op);
  }

  // <, >, <=, >= between numbers, strings or lists.
  static Expected<int> order(const Value& l, const Value& r) {
    if (l.is_number() && r.is_number()) {
      if (l.is_float() || r.is_float()) {
        double a = l.as_double(), b = r.as_double();
        return a < b ? -1 : a > b ? 1 : 0;
      }
      return l.as_int() < r.as_int() ? -1 : l.as_int() > r.as_int() ? 1 : 0;
    }
    if (l.is_string() && r.is_string()) {
      int c = l.as_string().compare(r.as_string());
      return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    if (l.is_array() && r.is_array()) {
      const Array &a = l.as_array(), &b = r.as_array();
      for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        if (values_equal(a[i], b[i])) continue;
        return order(a[i], b[i]);
      }
      return a.size() < b.size() ? -1 : a.size() > b.size() ? 1 : 0;
    }
    return make_error("'<' not supported between instances of '", type_name(l), "' and '",
                      type_name(r), "'");
  }

  Expected<bool> contains(const Value& container, const Value& item) {
    if (container.is_string()) {
      if (!item.is_string()) {
        return make_error("'in <string>' requires string as left operand, not ", type_name(item));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    }
    if (container.is_array()) {
      for (const auto& x : container.as_array()) {
        if (values_equal(x, item)) return true;
      }
      return false;
    }
    if (container.is_object())
      return item.is_string() && container.get(item.as_string()) != nullptr;
    if (container.is_undefined()) return false;
    return make_error("argument of type '", type_name(container), "' is not iterable");
  }

  Expected<bool> compare(const std::string& op, const Value& l, const Value& r) {
    if (op == "==") return values_equal(l, r);
    if (op == "!=") return !values_equal(l, r);
    if (op == "in" || op == "not in") {
      JTRY(c, contains(r, l));
      return c == (op == "in");
    }
    JTRY(c, order(l, r));
    if (op == "<") return c < 0;
    if (op == ">") return c > 0;
    if (op == "<=") return c <= 0;
    return c >= 0;
  }

  // ---- tests ----

  Expected<bool> apply_test(const std::string& name, const Value& v, const Array& args) {
    auto arg0 = [&]() -> Expected<Value> {
      if (args.empty()) return make_error("test '", name, "' needs an argument");
      return args[0];
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "boolean") return v.is_bool();
    if (name == "true") return v.is_bool() && v.as_bool();
    if (name == "false") return v.is_bool() && !v.as_bool();
    if (name == "integer") return v.is_int();
    if (name == "float") return v.is_float();
    if (name == "number") return v.is_number();
    if (name == "string") return v.is_string();
    if (name == "mapping") return v.is_object();
    if (name == "iterable")
      return v.is_array() || v.is_object() || v.is_string() || v.is_undefined();
    if (name == "sequence")
      return v.is_array() || v.is_object() || v.is_string() || v.is_undefined();
    if (name == "callable") return v.is_function();
    if (name == "lower" || name == "upper") {
      return str_predicate(v.to_str(), name == "lower" ? "islower" : "isupper");
    }
    if (name == "odd" || name == "even" || name == "divisibleby") {
      // Jinja: value % 2 == 1, value % 2 == 0, value % num == 0 (Python numbers).
      Value divisor = Value::integer(2);
      if (name == "divisibleby") {
        JTRY(d, arg0());
        divisor = d;
      }
      JTRY(rem, binary("%", v, divisor));
      return values_equal(rem, Value::integer(name == "odd" ? 1 : 0));
    }
    static const char* const kCompare[][2] = {
        {"eq", "=="}, {"equalto", "=="}, {"==", "=="},      {"ne", "!="},
        {"!=", "!="}, {"lt", "<"},       {"lessthan", "<"}, {"<", "<"},
        {"le", "<="}, {"<=", "<="},      {"gt", ">"},       {"greaterthan", ">"},
        {">", ">"},   {"ge", ">="},      {">=", ">="},      {"in", "in"}};
    for (const auto& c : kCompare) {
      if (name == c[0]) {
        JTRY(other, arg0());
        if (std::string(c[1]) == "in") return compare("in", v, other);
        return compare(c[1], v, other);
      }
    }
    if (name == "sameas") {
      JTRY(other, arg0());
      if (v.kind() != other.kind()) return false;
      if (v.is_none() || v.is_undefined()) return true;
      if (v.is_bool()) return v.as_bool() == other.as_bool();
      return values_equal(v, other) && (v.is_int() || v.is_string());
    }
    return make_error("unknown test '", name, "'");
  }

  // ---- filters ----

  Expected<Value> apply_filter(const std::string& name, const Value& v, const CallArgs& a) {
    Binder b(a, name.c_str());
    if (name == "trim") {
      REALM_TRY(b.check(1, {"chars"}));
      std::string s = v.to_str();
      const Value* chars = b.get(0, "chars");
      if (chars && chars->is_string())
        return Value::string(std::string(strip_chars(s, chars->as_string(), true, true)));
      return Value::string(std::string(py_strip(s, true, true)));
    }
    if (name == "length" || name == "count") {
      if (v.is_string())
        return Value::integer(static_cast<int64_t>(count_code_points(v.as_string())));
      if (v.is_array()) return Value::integer(static_cast<int64_t>(v.as_array().size()));
      if (v.is_object()) return Value::integer(static_cast<int64_t>(v.as_object().items.size()));
      if (v.is_undefined()) return Value::integer(0);
      return make_error("object of type '", type_name(v), "' has no len()");
    }
    if (name == "upper") return Value::string(py_upper(v.to_str()));
    if (name == "lower") return Value::string(py_lower(v.to_str()));
    if (name == "capitalize") return Value::string(capitalize(v.to_str()));
    if (name == "title") return Value::string(jinja_title(v.to_str()));
    if (name == "string") return make_string(v.to_str());
    if (name == "safe") return v;
    if (name == "e" || name == "escape" || name == "forceescape")
      return make_string(html_escape(v.to_str()));
    if (name == "tojson") {
      // transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
      REALM_TRY(b.check(4, {"ensure_ascii", "indent", "separators", "sort_keys"}));
      const Value* ea = b.get(0, "ensure_ascii");
      const Value* ind = b.get(1, "indent");
      const Value* seps = b.get(2, "separators");
      const Value* sk = b.get(3, "sort_keys");
      JsonOptions o;
      o.ensure_ascii = ea && ea->truthy();
      o.sort_keys = sk && sk->truthy();
      if (ind && !ind->is_none()) {
        if (!ind->is_int() || ind->as_int() < 0 || ind->as_int() > 64) {
          return make_error("tojson indent must be an integer from 0 to 64");
        }
        o.indent = static_cast<int>(ind->as_int());
      }
      if (seps && !seps->is_none()) {
        if (!seps->is_array() || seps->as_array().size() != 2 || !seps->as_array()[0].is_string() ||
            !seps->as_array()[1].is_string()) {
          return make_error("tojson separators must be a pair of strings");
        }
        o.item_sep = seps->as_array()[0].as_string().c_str();
        o.key_sep = seps->as_array()[1].as_string().c_str();
      }
      JTRY(json, to_json(v, o));
      return make_string(std::move(json));
    }
    if (name == "d" || name == "default") {
      REALM_TRY(b.check(2, {"default_value", "boolean"}));
      const Value* dv = b.get(0, "default_value");
      const Value* boolean = b.get(1, "boolean");
      bool use_default = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
      if (use_default) return dv ? *dv : Value::string("");
      return v;
    }
    if (name == "first" || name == "last") {
      JTRY(items, iterate(v));
      if (items.empty()) return Value();
      return name == "first" ? items.front() : items.back();
    }
    if (name == "join") {
      REALM_TRY(b.check(2, {"d", "attribute"}));
      const Value* sep = b.get(0, "d");
      const Value* attr = b.get(1, "attribute");
      JTRY(items, iterate(v));
      std::string d = sep ? sep->to_str() : "";
      std::string out;
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += d;
        if (attr) {
          JTRY(x, attribute_of(items[i], *attr));
          out += x.to_str();
        } else {
          out += items[i].to_str();
        }
        if (out.size() > limits_.max_output_bytes) return make_error("join() result too large");
      }
      return make_string(std::move(out));
    }
    if (name == "replace") {
      REALM_TRY(b.check(3, {"old", "new", "count"}));
      const Value* from = b.get(0, "old");
      const Value* to = b.get(1, "new");
      const Value* count = b.get(2, "count");
      if (!from || !to) return make_error("replace needs two arguments");
      return make_string(replace_all(v.to_str(), from->to_str(), to->to_str(),
                                     count && count->is_int() ? count->as_int() : -1));
    }
    if (name == "list") {
      JTRY(items, iterate(v));
      return make_array(std::move(items));
    }
    if (name == "items") {
      if (v.is_undefined()) return Value::array({});
      if (!v.is_object()) return make_error("items filter needs a mapping, got ", type_name(v));
      bool found;
      return call_method(v, "items", CallArgs{}, &found);
    }
    if (name == "reverse") {
      if (v.is_string()) {
        auto pts = code_points(v.as_string());
        std::string out;
        for (size_t i = pts.size(); i-- > 0;) out += pts[i];
        return Value::string(std::move(out));
      }
      JTRY(items, iterate(v));
      std::reverse(items.begin(), items.end());
      return make_array(std::move(items));
    }
    if (name == "int") {
      REALM_TRY(b.check(2, {"default", "base"}));
      const Value* dflt = b.get(0, "default");
      Value fallback = dflt ? *dflt : Value::integer(0);
      if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
      if (v.is_float()) {
        double d = v.as_double();
        if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
        return Value::integer(static_cast<int64_t>(d));
      }
      if (v.is_string()) {
        std::string s(py_strip(v.as_string(), true, true));
        char* end = nullptr;
        errno = 0;
        long long i = std::strtoll(s.c_str(), &end, 10);
        if (!s.empty() && end == s.c_str() + s.size() && errno == 0) return Value::integer(i);
        double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d) &&
            std::fabs(d) < 9.2e18) {
          return Value::integer(static_cast<int64_t>(d));
        }
      }
      return fallback;
    }
    if (name == "float") {
      const Value* dflt = b.get(0, "default");
      Value fallback = dflt ? *dflt : Value::number(0.0);
      if (v.is_number()) return Value::number(v.as_double());
      if (v.is_string()) {
        std::string s(py_strip(v.as_string(), true, true));
        char* end = nullptr;
        double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && end == s.c_str() + s.size()) return Value::number(d);
      }
      return fallback;
    }
    if (name == "abs") {
      if (v.is_float()) return Value::number(std::fabs(v.as_double()));
      if (v.is_int() || v.is_bool()) {
        if (v.as_int() == INT64_MIN) return make_error("integer overflow");
        return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
      }
      return make_error("bad operand type for abs(): '", type_name(v), "'");
    }
    if (name == "round") {
      REALM_TRY(b.check(2, {"precision", "method"}));
      const Value* prec = b.get(0, "precision");
      const Value* method = b.get(1, "method");
      if (!v.is_number()) return make_error("round needs a number");
      int64_t p = prec && prec->is_int() ? prec->as_int() : 0;
      if (p < -20 || p > 20) return make_error("round precision out of range");
      std::string m = method ? method->to_str() : "common";
      // Python round(int, n) stays an int; floor/ceil go through math and give floats.
      if (m == "common" && (v.is_int() || v.is_bool()) && p >= 0) return Value::integer(v.as_int());
      double scale = std::pow(10.0, static_cast<double>(p));
      double x = v.as_double() * scale;
      if (m == "common")
        x = std::nearbyint(x);  // Python round(): half to even
      else if (m == "ceil")
        x = std::ceil(x);
      else if (m == "floor")
        x = std::floor(x);
      else
        return make_error("method must be common, ceil or floor");
      return Value::number(x / scale);
    }
    if (name == "format") {
      if (!a.args.empty() && !a.kwargs.empty()) {
        return make_error("can't handle positional and keyword arguments at the same time");
      }
      if (!a.kwargs.empty()) return make_error("format() with keyword arguments is not supported");
      JTRY(text, percent_format(v.to_str(), Value::tuple(a.args)));
      return make_string(std::move(text));
    }
    if (name == "wordcount") {  // runs of \w (letters, digits, _; non-ASCII counts as a letter)
      int64_t words = 0;
      bool in_word = false;
      for (unsigned char c : v.to_str()) {
        bool w = std::isalnum(c) || c == '_' || c >= 0x80;
        if (w && !in_word) ++words;
        in_word = w;
      }
      return Value::integer(words);
    }
    if (name == "indent") return indent(v, b);
    if (name == "attr") {
      const Value* n = b.get(0, "name");
      if (!n || !n->is_string()) return make_error("attr needs a name");
      const Value* x = v.get(n->as_string());
      return x ? *x : Value();
    }
    if (name == "map") return map(v, a);
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      return select(name, v, a);
    }
    if (name == "unique") {
      REALM_TRY(b.check(2, {"case_sensitive", "attribute"}));
      const Value* cs = b.get(0, "case_sensitive");
      const Value* attr = b.get(1, "attribute");
      JTRY(items, iterate(v));
      Array out;
      Array seen;
      for (const auto& x : items) {
        Value key = x;
        if (attr) {
          JTRY(k, attribute_of(x, *attr));
          key = k;
        }
        if (key.is_string() && !(cs && cs->truthy()))
          key = Value::string(py_lower(key.as_string()));
        bool dup = false;
        for (const auto& s : seen) dup = dup || values_equal(s, key);
        if (!dup) {
          seen.push_back(key);
          out.push_back(x);
        }
      }
      return make_array(std::move(out));
    }
    if (name == "sort") {
      REALM_TRY(b.check(3, {"reverse", "case_sensitive", "attribute"}));
      const Value* rev = b.get(0, "reverse");
      const Value* cs = b.get(1, "case_sensitive");
      const Value* attr = b.get(2, "attribute");
      JTRY(items, iterate(v));
      std::vector<std::pair<Value, Value>> keyed;
      for (const auto& x : items) {
        Value key = x;
        if (attr) {
          JTRY(k, attribute_of(x, *attr));
          key = k;
        }
        if (key.is_string() && !(cs && cs->truthy()))
          key = Value::string(py_lower(key.as_string()));
        keyed.emplace_back(key, x);
      }
      Status failure;
      std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& p, const auto& q) {
        auto c = order(p.first, q.first);
        if (!c) {
          failure = c.take_error();
          return false;
        }
        return *c < 0;
      });
      if (!failure) return failure.take_error();
      Array out;
      for (auto& [k, x] : keyed) out.push_back(std::move(x));
      if (rev && rev->truthy()) std::reverse(out.begin(), out.end());
      return make_array(std::move(out));
    }
    if (name == "dictsort") {
      REALM_TRY(b.check(3, {"case_sensitive", "by", "reverse"}));
      const Value* cs = b.get(0, "case_sensitive");
      const Value* by = b.get(1, "by");
      const Value* rev = b.get(2, "reverse");
      if (!v.is_object()) return make_error("dictsort needs a mapping, got ", type_name(v));
      bool by_value = by && by->is_string() && by->as_string() == "value";
      if (by && !(by->is_string() && (by->as_string() == "key" || by_value))) {
        return make_error("You can only sort by either 'key' or 'value'");
      }
      std::vector<std::pair<Value, Value>> keyed;
      for (const auto& [k, x] : v.as_object().items) {
        Value key = by_value ? x : Value::string(k);
        if (key.is_string() && !(cs && cs->truthy())) {
          key = Value::string(py_lower(key.as_string()));
        }
        keyed.emplace_back(key, Value::tuple({Value::string(k), x}));
      }
      Status failure;
      std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& p, const auto& q) {
        auto c = order(p.first, q.first);
        if (!c) {
          failure = c.take_error();
          return false;
        }
        return rev && rev->truthy() ? *c > 0 : *c < 0;
      });
      if (!failure) return failure.take_error();
      Array out;
      for (auto& [k, x] : keyed) out.push_back(std::move(x));
      return make_array(std::move(out));
    }
    if (name == "sum") {
      REALM_TRY(b.check(2, {"attribute", "start"}));
      const Value* attr = b.get(0, "attribute");
      const Value* start = b.get(1, "start");
      Value acc = start ? *start : Value::integer(0);
      JTRY(items, iterate(v));
      for (const auto& x : items) {
        Value term = x;
        if (attr) {
          JTRY(t, attribute_of(x, *attr));
          term = t;
        }
        JTRY(next, binary("+", acc, term));
        acc = std::move(next);
      }
      return acc;
    }
    if (name == "min" || name == "max") {
      JTRY(items, iterate(v));
      if (items.empty()) return Value();
      Value best = items[0];
      for (size_t i = 1; i < items.size(); ++i) {
        JTRY(c, order(items[i], best));
        if (name == "min" ? c < 0 : c > 0) best = items[i];
      }
      return best;
    }
    return make_error("unknown filter '", name, "'");
  }

  static std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&#34;";
          break;
        case '\'':
          out += "&#39;";
          break;
        default:
          out += c;
      }
    }
    return out;
  }

  // Jinja's title filter: each word (split at whitespace and -({[<) gets its first code point
  // upper-cased and the rest lower-cased.
  static std::string jinja_title(const std::string& s) {
    std::string out;
    bool word_start = true;
    for (size_t i = 0; i < s.size();) {
      size_t len;
      char32_t c = decode_utf8(s, i, &len);
      bool sep = py_isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
      if (sep) {
        out.append(s, i, len);
        word_start = true;
      } else if (word_start) {
        append_upper(out, c);
        word_start = false;
      } else {
        out += py_lower(std::string_view(s).substr(i, len));
      }
      i += len;
    }
    return out;
  }

  Expected<Value> indent(const Value& v, const Binder& b) {
    REALM_TRY(b.check(3, {"width", "first", "blank"}));
    const Value* width = b.get(0, "width");
    const Value* first = b.get(1, "first");
    const Value* blank = b.get(2, "blank");
    std::string pad;
    if (!width) {
      pad = "    ";
    } else if (width->is_string()) {
      pad = width->as_string();
    } else if (width->is_int() && width->as_int() >= 0 && width->as_int() <= 1024) {
      pad = std::string(static_cast<size_t>(width->as_int()), ' ');
    } else {
      return make_error("indent width must be a string or an integer from 0 to 1024");
    }
    std::string s = v.to_str() + "\n";
    std::vector<std::string> lines = splitlines(s);
    std::string out;
    if (blank && blank->truthy()) {
      for (size_t i = 0; i < lines.size(); ++i) {
        if (i) out += "\n" + pad;
        out += lines[i];
      }
    } else {
      out = lines.empty() ? "" : lines[0];
      for (size_t i = 1; i < lines.size(); ++i) {
        out += "\n";
        if (!lines[i].empty()) out += pad;
        out += lines[i];
      }
    }
    if (first && first->truthy()) out = pad + out;
    return make_string(std::move(out));
  }

  // Jinja attribute lookup for filters: "a.b" paths and integer indices.
  Expected<Value> attribute_of(const Value& item, const Value& attr) {
    if (attr.is_int()) return get_item(item, attr);
    std::string path = attr.to_str();
    Value cur = item;
    size_t pos = 0;
    while (true) {
      size_t dot = path.find('.', pos);
      std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
      bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
      Value next;
      if (numeric && cur.is_array()) {
        JTRY(x, get_item(cur, Value::integer(std::atoll(part.c_str()))));
        next = x;
      } else if (const Value* x = cur.get(part)) {
        next = *x;
      }
      cur = std::move(next);
      if (dot == std::string::npos) break;
      pos = dot + 1;
    }
    return cur;
  }

  Expected<Value> map(const Value& v, const CallArgs& a) {
    JTRY(items, iterate(v));
    Array out;
    const Value* attr = nullptr;
    const Value* dflt = nullptr;
    for (const auto& [k, x] : a.kwargs) {
      if (k == "attribute")
        attr = &x;
      else if (k == "default")
        dflt = &x;
      else
        return make_error("map() got an unexpected keyword argument '", k, "'");
    }
    if (attr) {
      for (const auto& x : items) {
        REALM_TRY(step());
        JTRY(y, attribute_of(x, *attr));
        out.push_back(y.is_undefined() && dflt ? *dflt : y);
      }
      return make_array(std::move(out));
    }
    if (a.args.empty() || !a.args[0].is_string())
      return make_error("map() needs a filter name or attribute=");
    CallArgs rest;
    rest.args.assign(a.args.begin() + 1, a.args.end());
    for (const auto& x : items) {
      REALM_TRY(step());
      JTRY(y, apply_filter(a.args[0].as_string(), x, rest));
      out.push_back(std::move(y));
    }
    return make_array(std::move(out));
  }

  Expected<Value> select(const std::string& name, const Value& v, const CallArgs& a) {
    bool by_attr = name == "selectattr" || name == "rejectattr";
    bool keep_if = name == "select" || name == "selectattr";
    if (!a.kwargs.empty()) return make_error(name, "() takes no keyword arguments");
    size_t k = 0;
    const Value* attr = nullptr;
    if (by_attr) {
      if (a.args.empty()) return make_error(name, "() needs an attribute name");
      attr = &a.args[k++];
    }
    std::string test;
    if (k < a.args.size()) {
      if (!a.args[k].is_string()) return make_error(name, "() test name must be a string");
      test = a.args[k++].as_string();
    }
    Array test_args(a.args.begin() + static_cast<std::ptrdiff_t>(k), a.args.end());
    JTRY(items, iterate(v));
    Array out;
    for (const auto& x : items) {
      REALM_TRY(step());
      Value subject = x;
      if (attr) {
        JTRY(y, attribute_of(x, *attr));
        subject = y;
      }
      bool pass;
      if (test.empty()) {
        pass = subject.truthy();
      } else {
        JTRY(t, apply_test(test, subject, test_args));
        pass = t;
      }
      if (pass == keep_if) out.push_back(x);
    }
    return make_array(std::move(out));
  }

  const Program& prog_;
  const Limits& limits_;
  std::vector<Scope> scopes_;
  std::string out_;
  uint64_t steps_ = 0;
  uint64_t total_bytes_ = 0;
  int depth_ = 0;
};

}  // namespace

Expected<Template> Template::parse(std::string_view source, const Limits& limits) {
  auto tokens = lex(source);
  if (!tokens) return tokens.take_error();
  auto prog = parse_program(*tokens, limits.max_depth);
  if (!prog) return prog.take_error();
  Template t;
  t.program_ = std::make_shared<const Program>(std::move(*prog));
  return t;
}

Expected<std::string> Template::render(const Value& context, const Limits& limits) const {
  if (!program_) return make_error("template not parsed");
  Renderer r(*program_, limits);
  return r.run(context);
}

}  // namespace realm::jinja
