#include "gguf/value.h"

#include <limits>

namespace realm::gguf {

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
      return "UINT8";
    case ValueType::INT8:
      return "INT8";
    case ValueType::UINT16:
      return "UINT16";
    case ValueType::INT16:
      return "INT16";
    case ValueType::UINT32:
      return "UINT32";
    case ValueType::INT32:
      return "INT32";
    case ValueType::FLOAT32:
      return "FLOAT32";
    case ValueType::BOOL:
      return "BOOL";
    case ValueType::STRING:
      return "STRING";
    case ValueType::ARRAY:
      return "ARRAY";
    case ValueType::UINT64:
      return "UINT64";
    case ValueType::INT64:
      return "INT64";
    case ValueType::FLOAT64:
      return "FLOAT64";
  }
  return "?";
}

uint32_t value_type_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::BOOL:
      return 1;
    case ValueType::UINT16:
    case ValueType::INT16:
      return 2;
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::FLOAT32:
      return 4;
    case ValueType::UINT64:
    case ValueType::INT64:
    case ValueType::FLOAT64:
      return 8;
    case ValueType::STRING:
    case ValueType::ARRAY:
      return 0;
  }
  return 0;
}

bool value_type_valid(uint32_t id) {
  return id <= static_cast<uint32_t>(ValueType::FLOAT64);
}

bool value_type_is_integer(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::UINT16:
    case ValueType::INT16:
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::UINT64:
    case ValueType::INT64:
      return true;
    default:
      return false;
  }
}

bool value_type_is_float(ValueType t) {
  return t == ValueType::FLOAT32 || t == ValueType::FLOAT64;
}

namespace {

// Signed interpretation of `bits` for type t; `is_neg` set when a signed value is negative.
int64_t signed_value(ValueType t, uint64_t bits) {
  switch (t) {
    case ValueType::INT8:
      return static_cast<int8_t>(bits);
    case ValueType::INT16:
      return static_cast<int16_t>(bits);
    case ValueType::INT32:
      return static_cast<int32_t>(bits);
    case ValueType::INT64:
      return static_cast<int64_t>(bits);
    default:
      return 0;
  }
}

bool is_signed(ValueType t) {
  return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 ||
         t == ValueType::INT64;
}

std::optional<uint64_t> to_uint(ValueType t, uint64_t bits) {
  if (!value_type_is_integer(t)) return std::nullopt;
  if (is_signed(t)) {
    int64_t v = signed_value(t, bits);
    if (v < 0) return std::nullopt;
    return static_cast<uint64_t>(v);
  }
  return bits;
}

std::optional<int64_t> to_int(ValueType t, uint64_t bits) {
  if (!value_type_is_integer(t)) return std::nullopt;
  if (is_signed(t)) return signed_value(t, bits);
  if (bits > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return static_cast<int64_t>(bits);
}

std::optional<double> to_float(ValueType t, uint64_t bits) {
  if (t == ValueType::FLOAT32) {
    float f;
    uint32_t b = static_cast<uint32_t>(bits);
    std::memcpy(&f, &b, 4);
    return f;
  }
  if (t == ValueType::FLOAT64) {
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  return std::nullopt;
}

}  // namespace

Value Value::scalar(ValueType type, uint64_t bits) {
  Value v;
  v.type_ = type;
  v.bits_ = bits;
  return v;
}

Value Value::f32(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return scalar(ValueType::FLOAT32, b);
}

Value Value::string(std::string s) {
  Value v;
  v.type_ = ValueType::STRING;
  v.str_ = std::move(s);
  return v;
}

Value Value::numeric_array(ValueType elem, std::vector<uint8_t> raw) {
  Value v;
  v.type_ = ValueType::ARRAY;
  v.elem_ = elem;
  v.raw_ = std::move(raw);
  return v;
}

Value Value::string_array(std::vector<std::string> items) {
  Value v;
  v.type_ = ValueType::ARRAY;
  v.elem_ = ValueType::STRING;
  v.strings_ = std::move(items);
  return v;
}

Value Value::array_of_arrays(std::vector<Value> items) {
  Value v;
  v.type_ = ValueType::ARRAY;
  v.elem_ = ValueType::ARRAY;
  v.arrays_ = std::move(items);
  return v;
}

std::optional<uint64_t> Value::as_uint() const {
  return to_uint(type_, bits_);
}
std::optional<int64_t> Value::as_int() const {
  return to_int(type_, bits_);
}
std::optional<double> Value::as_float() const {
  return to_float(type_, bits_);
}
std::optional<bool> Value::as_bool() const {
  if (type_ != ValueType::BOOL) return std::nullopt;
  return bits_ != 0;
}
std::optional<std::string_view> Value::as_string() const {
  if (type_ != ValueType::STRING) return std::nullopt;
  return std::string_view(str_);
}

uint64_t Value::size() const {
  if (type_ != ValueType::ARRAY) return 0;
  if (elem_ == ValueType::STRING) return strings_.size();
  if (elem_ == ValueType::ARRAY) return arrays_.size();
  uint32_t es = value_type_size(elem_);
  return es ? raw_.size() / es : 0;
}

Value Value::element(uint64_t i) const {
  if (type_ != ValueType::ARRAY || i >= size()) return Value();
  if (elem_ == ValueType::STRING) return string(strings_[i]);
  if (elem_ == ValueType::ARRAY) return arrays_[i];
  uint32_t es = value_type_size(elem_);
  uint64_t bits = 0;
  std::memcpy(&bits, raw_.data() + i * es, es);
  return scalar(elem_, bits);
}

std::optional<int64_t> Value::int_at(uint64_t i) const {
  if (type_ != ValueType::ARRAY || !value_type_is_integer(elem_) || i >= size())
    return std::nullopt;
  return element(i).as_int();
}

std::optional<double> Value::float_at(uint64_t i) const {
  if (type_ != ValueType::ARRAY || !value_type_is_float(elem_) || i >= size()) return std::nullopt;
  return element(i).as_float();
}

}  // namespace realm::gguf
