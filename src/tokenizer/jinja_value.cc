// Jinja values: Python-compatible str(), repr(), ==, and json.dumps.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "tokenizer/jinja_ast.h"

namespace realm::jinja {

bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

char32_t decode_utf8(std::string_view s, size_t i, size_t* len) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  unsigned char c = b(0);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *len = 1;
    return c;
  }
  char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) {
      *len = 1;
      return c;
    }
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  *len = n;
  return cp;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::string_view py_strip(std::string_view s, bool left, bool right) {
  size_t b = 0, e = s.size();
  if (left) {
    while (b < e) {
      size_t len;
      char32_t c = decode_utf8(s, b, &len);
      if (!py_isspace(c)) break;
      b += len;
    }
  }
  if (right) {
    while (e > b) {
      size_t start = e - 1;  // back up to the start of the last code point
      while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 && e - start < 4) {
        --start;
      }
      size_t len;
      char32_t c = decode_utf8(s, start, &len);
      if (start + len != e) {
        start = e - 1;
        c = static_cast<unsigned char>(s[start]);
      }
      if (!py_isspace(c)) break;
      e = start;
    }
  }
  return s.substr(b, e - b);
}

Value Value::none() {
  Value v;
  v.kind_ = Kind::NONE;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::BOOL;
  v.i_ = b ? 1 : 0;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::INT;
  v.i_ = i;
  return v;
}
Value Value::number(double d) {
  Value v;
  v.kind_ = Kind::FLOAT;
  v.d_ = d;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.kind_ = Kind::STRING;
  v.s_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::array(Array items) {
  Value v;
  v.kind_ = Kind::ARRAY;
  int depth = 0;
  bool ns = false;
  for (const auto& e : items) {
    depth = std::max(depth, e.depth());
    ns = ns || e.holds_namespace();
  }
  v.array_depth_ = depth + 1;
  v.array_holds_ns_ = ns;
  v.a_ = std::make_shared<const Array>(std::move(items));
  return v;
}

int Value::depth() const {
  if (kind_ == Kind::ARRAY) return array_depth_;
  if (kind_ == Kind::OBJECT) return o_->depth;
  return 0;
}

bool Value::holds_namespace() const {
  if (kind_ == Kind::ARRAY) return array_holds_ns_;
  if (kind_ == Kind::OBJECT) return o_->is_namespace || o_->holds_namespace;
  return false;
}
Value Value::tuple(Array items) {
  Value v = array(std::move(items));
  v.tuple_ = true;
  return v;
}
Value Value::object() {
  Value v;
  v.kind_ = Kind::OBJECT;
  v.o_ = std::make_shared<Object>();
  return v;
}
Value Value::function(Function f) {
  Value v;
  v.kind_ = Kind::FUNCTION;
  v.f_ = std::make_shared<const Function>(std::move(f));
  return v;
}

double Value::as_double() const {
  return kind_ == Kind::FLOAT ? d_ : static_cast<double>(i_);
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::UNDEFINED:
    case Kind::NONE:
      return false;
    case Kind::BOOL:
    case Kind::INT:
      return i_ != 0;
    case Kind::FLOAT:
      return d_ != 0;
    case Kind::STRING:
      return !s_->empty();
    case Kind::ARRAY:
      return !a_->empty();
    case Kind::OBJECT:
      return !o_->items.empty();
    case Kind::FUNCTION:
      return true;
  }
  return false;
}

const Value* Value::get(std::string_view key) const {
  if (kind_ != Kind::OBJECT) return nullptr;
  for (const auto& [k, v] : o_->items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Value::set(std::string key, Value v) const {
  if (kind_ != Kind::OBJECT) return;
  o_->depth = std::max(o_->depth, v.depth() + 1);
  o_->holds_namespace = o_->holds_namespace || v.holds_namespace();
  for (auto& [k, old] : o_->items) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  o_->items.emplace_back(std::move(key), std::move(v));
}

namespace {

// Python float repr: shortest round-trip digits; exponent form when exp < -4 or exp >= 16.
std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // e.g. "-1.2345e+02"
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t epos = sci.find('e');
  int exp = std::atoi(sci.c_str() + epos + 1);
  std::string digits;
  for (size_t i = 0; i < epos; ++i) {
    if (sci[i] != '.') digits += sci[i];
  }
  std::string out = neg ? "-" : "";
  if (exp < -4 || exp >= 16) {
    out += digits[0];
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  } else if (exp < 0) {
    out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  } else {
    size_t int_len = static_cast<size_t>(exp) + 1;
    if (digits.size() <= int_len) {
      out += digits + std::string(int_len - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, int_len) + "." + digits.substr(int_len);
    }
  }
  return out;
}

bool py_isprintable(char32_t c) {
  if (c < 0x20 || c == 0x7F) return false;
  if (c >= 0x80 && c <= 0xA0) return false;
  if (c == 0xAD) return false;
  if (py_isspace(c) && c != ' ') return false;
  if ((c >= 0xD800 && c <= 0xDFFF) || c == 0xFEFF || (c >= 0x200B && c <= 0x200F) ||
      (c >= 0x2060 && c <= 0x2064)) {
    return false;
  }
  return true;
}

std::string str_repr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < s.size();) {
    size_t len;
    char32_t c = decode_utf8(s, i, &len);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (!py_isprintable(c)) {
      char b[16];
      if (c < 0x100) {
        std::snprintf(b, sizeof b, "\\x%02x", static_cast<unsigned>(c));
      } else if (c < 0x10000) {
        std::snprintf(b, sizeof b, "\\u%04x", static_cast<unsigned>(c));
      } else {
        std::snprintf(b, sizeof b, "\\U%08x", static_cast<unsigned>(c));
      }
      out += b;
    } else {
      out.append(s, i, len);
    }
    i += len;
  }
  out += quote;
  return out;
}

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (ensure_ascii && c >= 0x80) {
      size_t len;
      char32_t cp = decode_utf8(s, i, &len);
      char b[16];
      if (cp >= 0x10000) {
        cp -= 0x10000;
        std::snprintf(b, sizeof b, "\\u%04x\\u%04x", 0xD800 + static_cast<unsigned>(cp >> 10),
                      0xDC00 + static_cast<unsigned>(cp & 0x3FF));
      } else {
        std::snprintf(b, sizeof b, "\\u%04x", static_cast<unsigned>(cp));
      }
      out += b;
      i += len;
      continue;
    }
    ++i;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

Status json_value(std::string& out, const Value& v, const JsonOptions& o, int level) {
  const int indent = o.indent;
  if (level > 512) return make_error("tojson: value nested too deeply");
  auto newline = [&](int lvl) {
    if (indent >= 0) {
      out += '\n';
      out.append(static_cast<size_t>(indent) * static_cast<size_t>(lvl), ' ');
    }
  };
  const char* item_sep = o.item_sep ? o.item_sep : indent >= 0 ? "," : ", ";
  const char* key_sep = o.key_sep ? o.key_sep : ": ";
  switch (v.kind()) {
    case Value::Kind::UNDEFINED:
      return make_error("tojson: Object of type Undefined is not JSON serializable");
    case Value::Kind::FUNCTION:
      return make_error("tojson: a function is not JSON serializable");
    case Value::Kind::NONE:
      out += "null";
      return {};
    case Value::Kind::BOOL:
      out += v.as_bool() ? "true" : "false";
      return {};
    case Value::Kind::INT:
      out += std::to_string(v.as_int());
      return {};
    case Value::Kind::FLOAT: {
      double d = v.as_double();
      if (std::isnan(d)) {
        out += "NaN";
      } else if (std::isinf(d)) {
        out += d < 0 ? "-Infinity" : "Infinity";
      } else {
        out += float_repr(d);
      }
      return {};
    }
    case Value::Kind::STRING:
      json_string(out, v.as_string(), o.ensure_ascii);
      return {};
    case Value::Kind::ARRAY: {
      const Array& a = v.as_array();
      if (a.empty()) {
        out += "[]";
        return {};
      }
      out += '[';
      for (size_t i = 0; i < a.size(); ++i) {
        if (i) out += item_sep;
        newline(level + 1);
        REALM_TRY(json_value(out, a[i], o, level + 1));
      }
      newline(level);
      out += ']';
      return {};
    }
    case Value::Kind::OBJECT: {
      const auto& items = v.as_object().items;
      if (items.empty()) {
        out += "{}";
        return {};
      }
      std::vector<size_t> order(items.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      if (o.sort_keys) {
        std::stable_sort(order.begin(), order.end(),
                         [&](size_t a, size_t b) { return items[a].first < items[b].first; });
      }
      out += '{';
      for (size_t i = 0; i < order.size(); ++i) {
        if (i) out += item_sep;
        newline(level + 1);
        json_string(out, items[order[i]].first, o.ensure_ascii);
        out += key_sep;
        REALM_TRY(json_value(out, items[order[i]].second, o, level + 1));
      }
      newline(level);
      out += '}';
      return {};
    }
  }
  return {};
}

void append_repr(std::string& out, const Value& v, int level);

void append_str(std::string& out, const Value& v, int level) {
  switch (v.kind()) {
    case Value::Kind::UNDEFINED:
      return;
    case Value::Kind::NONE:
      out += "None";
      return;
    case Value::Kind::BOOL:
      out += v.as_bool() ? "True" : "False";
      return;
    case Value::Kind::INT:
      out += std::to_string(v.as_int());
      return;
    case Value::Kind::FLOAT:
      out += float_repr(v.as_double());
      return;
    case Value::Kind::STRING:
      out += v.as_string();
      return;
    case Value::Kind::FUNCTION:
      out += "<function>";
      return;
    case Value::Kind::ARRAY:
    case Value::Kind::OBJECT:
      append_repr(out, v, level);
      return;
  }
}

void append_repr(std::string& out, const Value& v, int level) {
  if (level > 512) {
    out += "...";
    return;
  }
  switch (v.kind()) {
    case Value::Kind::STRING:
      out += str_repr(v.as_string());
      return;
    case Value::Kind::UNDEFINED:
      out += "Undefined";
      return;
    case Value::Kind::ARRAY: {
      out += v.is_tuple() ? '(' : '[';
      bool first = true;
      for (const auto& e : v.as_array()) {
        if (!first) out += ", ";
        first = false;
        append_repr(out, e, level + 1);
      }
      if (v.is_tuple() && v.as_array().size() == 1) out += ',';
      out += v.is_tuple() ? ')' : ']';
      return;
    }
    case Value::Kind::OBJECT: {
      if (v.as_object().is_namespace) {
        out += "<Namespace ";
        bool first = true;
        for (const auto& [k, e] : v.as_object().items) {
          if (!first) out += ", ";
          first = false;
          out += k + "=";
          append_repr(out, e, level + 1);
        }
        out += '>';
        return;
      }
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.as_object().items) {
        if (!first) out += ", ";
        first = false;
        out += str_repr(k) + ": ";
        append_repr(out, e, level + 1);
      }
      out += '}';
      return;
    }
    default:
      append_str(out, v, level);
      return;
  }
}

}  // namespace

std::string Value::to_str() const {
  std::string out;
  append_str(out, *this, 0);
  return out;
}

std::string Value::repr() const {
  std::string out;
  append_repr(out, *this, 0);
  return out;
}

bool values_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::UNDEFINED:
    case Value::Kind::NONE:
      return true;
    case Value::Kind::STRING:
      return a.as_string() == b.as_string();
    case Value::Kind::ARRAY: {
      const Array &x = a.as_array(), &y = b.as_array();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!values_equal(x[i], y[i])) return false;
      }
      return true;
    }
    case Value::Kind::OBJECT: {
      const auto &x = a.as_object().items, &y = b.as_object().items;
      if (&x == &y) return true;
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x) {
        const Value* o = b.get(k);
        if (!o || !values_equal(v, *o)) return false;
      }
      return true;
    }
    case Value::Kind::FUNCTION:
      return &a.as_function() == &b.as_function();
    default:
      return false;
  }
}

Expected<std::string> to_json(const Value& v, const JsonOptions& options) {
  std::string out;
  REALM_TRY(json_value(out, v, options, 0));
  return out;
}

}  // namespace realm::jinja
