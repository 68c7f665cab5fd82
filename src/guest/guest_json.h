// A small JSON reader and writer for guests (no exceptions, no allocation surprises): the default
// guest parses requests and model_info with it and writes its events. Part of the guest SDK.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace realm::guest::json {

class Value {
 public:
  enum class Kind { NUL, BOOL, NUMBER, STRING, ARRAY, OBJECT };

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::NUL; }
  bool is_bool() const { return kind_ == Kind::BOOL; }
  bool is_number() const { return kind_ == Kind::NUMBER; }
  bool is_string() const { return kind_ == Kind::STRING; }
  bool is_array() const { return kind_ == Kind::ARRAY; }
  bool is_object() const { return kind_ == Kind::OBJECT; }

  bool as_bool() const { return bool_; }
  double as_number() const { return number_; }
  // The number as an integer: false when it is not one (a fraction, an exponent, out of range).
  bool as_int64(int64_t& out) const;
  bool as_uint64(uint64_t& out) const;
  // For STRING: the decoded text; for NUMBER: the literal as written.
  const std::string& text() const { return text_; }
  const std::vector<Value>& items() const { return items_; }
  const std::vector<std::pair<std::string, Value>>& members() const { return members_; }
  // The member `key` of an object (the last one when repeated), or nullptr.
  const Value* find(std::string_view key) const;

 private:
  friend class Parser;
  Kind kind_ = Kind::NUL;
  bool bool_ = false;
  double number_ = 0;
  std::string text_;
  std::vector<Value> items_;
  std::vector<std::pair<std::string, Value>> members_;
};

// Parses one JSON document (nesting depth <= 64). On malformed input returns false and sets
// `error` to a message naming the byte offset.
bool parse(std::string_view text, Value& out, std::string& error);

// Appends `s` as a JSON string literal (quotes included; control characters escaped; bytes >=
// 0x80 copied as they are, so valid UTF-8 stays valid).
void append_string(std::string& out, std::string_view s);
// Appends a number: integers exactly, other values with 9 significant digits; non-finite as null.
void append_number(std::string& out, double v);
void append_int(std::string& out, int64_t v);
// Appends `v` serialized compactly.
void append_value(std::string& out, const Value& v);

}  // namespace realm::guest::json
