// A small interpreter for the Jinja2 subset that chat templates use (tokenizer.chat_template).
// Semantics follow Jinja2 3.1 as Hugging Face transformers configures it: trim_blocks and
// lstrip_blocks on, loop controls (break/continue), Python-style values, a json.dumps-style tojson.
// Templates come from model files, so they are untrusted: parsing and rendering are bounded
// (nesting depth, loop iterations, output and value sizes) and every failure is an Error with a
// line and column; nothing throws.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/expected.h"

namespace realm::jinja {

class Value;
struct Object;
struct CallArgs;

using Array = std::vector<Value>;
// A callable value (global function, macro). Receives positional and keyword arguments.
using Function = std::function<Expected<Value>(const CallArgs&)>;

// A Jinja/Python value. Arrays are immutable once built and shared; objects (dicts) keep insertion
// order like Python dicts; a namespace() object is the only thing templates may mutate.
class Value {
 public:
  enum class Kind { UNDEFINED, NONE, BOOL, INT, FLOAT, STRING, ARRAY, OBJECT, FUNCTION };

  Value() = default;  // undefined
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double d);
  static Value string(std::string s);
  static Value array(Array items);
  static Value tuple(Array items);  // an array that prints as a Python tuple: (1, 2)
  static Value object();            // an empty dict
  static Value function(Function f);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::UNDEFINED; }
  bool is_none() const { return kind_ == Kind::NONE; }
  bool is_bool() const { return kind_ == Kind::BOOL; }
  bool is_int() const { return kind_ == Kind::INT; }
  bool is_float() const { return kind_ == Kind::FLOAT; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind_ == Kind::STRING; }
  bool is_array() const { return kind_ == Kind::ARRAY; }
  bool is_object() const { return kind_ == Kind::OBJECT; }
  bool is_function() const { return kind_ == Kind::FUNCTION; }
  bool is_tuple() const { return kind_ == Kind::ARRAY && tuple_; }
  // Nesting depth of arrays/objects (0 for scalars), and whether a namespace() object is inside:
  // the evaluator bounds the first and refuses namespaces inside namespaces (no cycles).
  int depth() const;
  bool holds_namespace() const;

  bool as_bool() const { return i_ != 0; }
  int64_t as_int() const { return i_; }  // INT and BOOL
  double as_double() const;              // any number
  const std::string& as_string() const { return *s_; }
  const Array& as_array() const { return *a_; }
  const Object& as_object() const { return *o_; }
  Object& mutable_object() const { return *o_; }
  const Function& as_function() const { return *f_; }

  // Python truthiness (undefined is false).
  bool truthy() const;
  // Python str(): what {{ value }} prints (undefined prints nothing).
  std::string to_str() const;
  // Python repr() (strings quoted), used inside printed lists and dicts.
  std::string repr() const;

  // Dict helpers (objects only). set() replaces an existing key in place.
  const Value* get(std::string_view key) const;
  void set(std::string key, Value v) const;

 private:
  Kind kind_ = Kind::UNDEFINED;
  bool tuple_ = false;
  bool array_holds_ns_ = false;
  int array_depth_ = 0;
  int64_t i_ = 0;
  double d_ = 0;
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<const Array> a_;
  std::shared_ptr<Object> o_;
  std::shared_ptr<const Function> f_;
};

struct Object {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // made by namespace(): `{% set ns.key = ... %}` allowed
  int depth = 1;              // 1 + the deepest value ever stored
  bool holds_namespace = false;
};

struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

// Python ==, with 1 == 1.0 == True and element-wise arrays/dicts.
bool values_equal(const Value& a, const Value& b);

// Python json.dumps options.
struct JsonOptions {
  int indent = -1;  // < 0: no newlines
  bool sort_keys = false;
  bool ensure_ascii = false;       // escape non-ASCII as \uXXXX
  const char* item_sep = nullptr;  // default ", " (or "," with indent)
  const char* key_sep = nullptr;   // default ": "
};

// json.dumps(value, ...) with the given options (defaults: ensure_ascii=False, compact).
Expected<std::string> to_json(const Value& v, const JsonOptions& options = {});

// Bounds for untrusted templates.
struct Limits {
  int max_depth = 200;                             // parser nesting and evaluation recursion
  uint64_t max_steps = 5'000'000;                  // loop iterations + calls during one render
  size_t max_output_bytes = size_t{16} << 20;      // rendered text, and any one string built
  size_t max_array_items = size_t{1} << 20;        // any one array or dict built
  uint64_t max_total_bytes = uint64_t{256} << 20;  // all strings and arrays built in one render
};

struct Program;  // the parsed AST (internal)

class Template {
 public:
  // Parses `source` (newlines normalized to \n, one trailing newline dropped, as Jinja does).
  static Expected<Template> parse(std::string_view source, const Limits& limits = {});

  // Renders with the variables of `context` (an object). Global helpers always present: range,
  // namespace, dict, raise_exception, strftime_now. A variable in `context` shadows a global.
  Expected<std::string> render(const Value& context, const Limits& limits = {}) const;

 private:
  std::shared_ptr<const Program> program_;
};

}  // namespace realm::jinja
