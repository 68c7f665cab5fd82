// Value: one GGUF metadata value (scalar, string or array, arrays possibly nested). Owns its data.
// The original value type is kept so a file can be written back byte for byte.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace realm::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

// "UINT32", "STRING", ... for messages and `realm info`.
std::string_view value_type_name(ValueType t);
// Bytes of one element of a fixed-size type (0 for STRING and ARRAY).
uint32_t value_type_size(ValueType t);
bool value_type_valid(uint32_t id);
bool value_type_is_integer(ValueType t);
bool value_type_is_float(ValueType t);

class Value {
 public:
  Value() = default;

  // Scalars. `bits` holds the little-endian value zero-extended to 64 bits.
  static Value scalar(ValueType type, uint64_t bits);
  static Value u32(uint32_t v) { return scalar(ValueType::UINT32, v); }
  static Value i32(int32_t v) { return scalar(ValueType::INT32, static_cast<uint32_t>(v)); }
  static Value u64(uint64_t v) { return scalar(ValueType::UINT64, v); }
  static Value f32(float v);
  static Value boolean(bool v) { return scalar(ValueType::BOOL, v ? 1 : 0); }
  static Value string(std::string s);
  // Array of fixed-size elements, `raw` holding count * value_type_size(elem) bytes.
  static Value numeric_array(ValueType elem, std::vector<uint8_t> raw);
  static Value string_array(std::vector<std::string> items);
  static Value array_of_arrays(std::vector<Value> items);
  template <typename T>
  static Value array_of(ValueType elem, const std::vector<T>& items) {
    std::vector<uint8_t> raw(items.size() * sizeof(T));
    if (!raw.empty()) std::memcpy(raw.data(), items.data(), raw.size());
    return numeric_array(elem, std::move(raw));
  }

  ValueType type() const { return type_; }
  bool is_array() const { return type_ == ValueType::ARRAY; }
  bool is_string() const { return type_ == ValueType::STRING; }
  bool is_integer() const { return value_type_is_integer(type_); }
  bool is_float() const { return value_type_is_float(type_); }

  // Scalar accessors: nullopt when the value is not of a compatible kind or does not fit.
  std::optional<uint64_t> as_uint() const;  // any integer type, value >= 0
  std::optional<int64_t> as_int() const;    // any integer type that fits int64
  std::optional<double> as_float() const;   // FLOAT32/FLOAT64
  std::optional<bool> as_bool() const;
  std::optional<std::string_view> as_string() const;
  uint64_t raw_bits() const { return bits_; }

  // Arrays.
  ValueType elem_type() const { return elem_; }
  uint64_t size() const;  // number of elements (arrays only)
  const std::vector<std::string>& strings() const { return strings_; }  // STRING arrays
  const std::vector<Value>& arrays() const { return arrays_; }          // ARRAY arrays
  const std::vector<uint8_t>& raw() const { return raw_; }              // numeric arrays
  // Element i of a numeric array, converted like the scalar accessors.
  std::optional<int64_t> int_at(uint64_t i) const;
  std::optional<double> float_at(uint64_t i) const;
  // Element i as a scalar Value.
  Value element(uint64_t i) const;

 private:
  ValueType type_ = ValueType::UINT8;
  ValueType elem_ = ValueType::UINT8;
  uint64_t bits_ = 0;
  std::string str_;
  std::vector<uint8_t> raw_;
  std::vector<std::string> strings_;
  std::vector<Value> arrays_;
};

}  // namespace realm::gguf
