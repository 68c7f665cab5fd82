#include "gguf/reader.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "gguf/known_keys.h"
#include "util/checked.h"

namespace realm::gguf {

// Sequential, bounds-checked reads over the file bytes. Every failure names the offset.
class Parser {
 public:
  explicit Parser(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  Status parse(GgufFile& f) {
    f.bytes_ = bytes_;
    uint32_t magic = 0;
    REALM_TRY(read_u32(magic, "magic"));
    if (magic != kMagic) {
      return fail_at(0, "not a GGUF file (magic 0x", hex(magic), ", expected 0x46554747 \"GGUF\")");
    }
    uint32_t version = 0;
    REALM_TRY(read_u32(version, "version"));
    if (version == 0x02000000 || version == 0x03000000) {
      return fail_at(4, "big-endian GGUF files are not supported");
    }
    if (version != 2 && version != 3) {
      return fail_at(4, "unsupported GGUF version ", version, " (supported: 2, 3)");
    }
    f.version_ = version;
    uint64_t n_tensors = 0, n_kv = 0;
    REALM_TRY(read_u64(n_tensors, "tensor count"));
    REALM_TRY(read_u64(n_kv, "metadata key-value count"));
    // Each key-value takes at least 12 bytes (key length + type) and each tensor info at least 24
    // (name length, n_dims, type, offset): bound the counts by the file before reserving anything.
    if (n_kv > remaining() / 12) {
      return fail_at(16, "metadata key-value count ", n_kv, " cannot fit in the ", remaining(),
                     " bytes left in the file");
    }
    if (n_tensors > remaining() / 24) {
      return fail_at(8, "tensor count ", n_tensors, " cannot fit in the ", remaining(),
                     " bytes left in the file");
    }

    f.kvs_.reserve(n_kv);
    for (uint64_t i = 0; i < n_kv; ++i) {
      uint64_t at = pos_;
      KeyValue kv;
      REALM_TRY(read_string(kv.key, "metadata key"));
      uint32_t type_id = 0;
      uint64_t type_at = pos_;
      REALM_TRY(read_u32(type_id, "value type"));
      if (!value_type_valid(type_id)) {
        return fail_at(type_at, "unknown value type ", type_id, " for key '", kv.key, "'");
      }
      REALM_TRY(read_value(static_cast<ValueType>(type_id), kv.value, kv.key, 0));
      if (!f.kv_index_.emplace(kv.key, f.kvs_.size()).second) {
        return fail_at(at, "duplicate metadata key '", kv.key, "'");
      }
      f.kvs_.push_back(std::move(kv));
    }
    REALM_TRY(check_known_keys(f));

    if (const Value* a = f.find("general.alignment")) {
      auto align = a->type() == ValueType::UINT32 ? a->as_uint() : std::nullopt;
      if (!align || *align == 0 || (*align & (*align - 1)) != 0) {
        return fail("general.alignment must be a UINT32 power of two, got ", describe(*a));
      }
      f.alignment_ = *align;
    }

    f.tensors_.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
      uint64_t at = pos_;
      TensorInfo t;
      REALM_TRY(read_tensor_info(t));
      if (!f.tensor_index_.emplace(t.name, f.tensors_.size()).second) {
        return fail_at(at, "duplicate tensor name '", t.name, "'");
      }
      f.tensors_.push_back(std::move(t));
    }

    auto data_offset = checked_align_up(pos_, f.alignment_);
    if (!data_offset) return fail("data section offset overflows");
    f.data_offset_ = *data_offset;
    if (f.tensors_.empty()) {
      // A file without tensors may end right after its metadata or after the padding.
      if (f.data_offset_ > bytes_.size()) f.data_offset_ = bytes_.size();
    } else if (f.data_offset_ > bytes_.size()) {
      return fail("file truncated: the data section starts at ", f.data_offset_,
                  " but the file has ", bytes_.size(), " bytes");
    }
    return check_tensor_ranges(f);
  }

 private:
  template <typename... Args>
  Error fail_at(uint64_t at, const Args&... args) {
    return make_error(args..., " (at byte offset ", at, ")");
  }
  template <typename... Args>
  Error fail(const Args&... args) {
    return make_error(args...);
  }

  static std::string hex(uint32_t v) {
    static const char* digits = "0123456789abcdef";
    std::string s(8, '0');
    for (int i = 7; i >= 0; --i, v >>= 4) s[i] = digits[v & 15];
    return s;
  }

  static std::string describe(const Value& v) {
    std::string s(value_type_name(v.type()));
    if (auto u = v.as_int()) s += " " + std::to_string(*u);
    if (auto str = v.as_string()) s += " \"" + std::string(str->substr(0, 64)) + "\"";
    return s;
  }

  uint64_t remaining() const { return bytes_.size() - pos_; }

  Status need(uint64_t n, const char* what) {
    if (n > remaining()) {
      return fail_at(pos_, "file truncated while reading ", what, ": need ", n, " bytes, ",
                     remaining(), " left");
    }
    return {};
  }

  Status read_raw(void* out, uint64_t n, const char* what) {
    REALM_TRY(need(n, what));
    if (n == 0) return {};  // an empty array: `out` may be null
    std::memcpy(out, bytes_.data() + pos_, n);
    pos_ += n;
    return {};
  }
  Status read_u32(uint32_t& v, const char* what) { return read_raw(&v, 4, what); }
  Status read_u64(uint64_t& v, const char* what) { return read_raw(&v, 8, what); }

  Status read_string(std::string& s, const char* what) {
    uint64_t at = pos_;
    uint64_t len = 0;
    REALM_TRY(read_u64(len, what));
    if (len > remaining()) {
      return fail_at(at, what, " length ", len, " exceeds the ", remaining(),
                     " bytes left in the file");
    }
    s.assign(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return {};
  }

  Status read_value(ValueType type, Value& out, const std::string& key, int depth) {
    if (type == ValueType::STRING) {
      std::string s;
      REALM_TRY(read_string(s, "string value"));
      out = Value::string(std::move(s));
      return {};
    }
    if (type != ValueType::ARRAY) {
      uint64_t bits = 0;
      REALM_TRY(read_raw(&bits, value_type_size(type), "scalar value"));
      if (type == ValueType::BOOL && bits > 1) {
        return fail_at(pos_ - 1, "bool value ", bits, " for key '", key, "' is not 0 or 1");
      }
      out = Value::scalar(type, bits);
      return {};
    }
    if (depth >= kMaxArrayDepth) {
      return fail_at(pos_, "arrays nested deeper than ", kMaxArrayDepth, " levels in key '", key,
                     "'");
    }
    uint64_t at = pos_;
    uint32_t elem_id = 0;
    uint64_t count = 0;
    REALM_TRY(read_u32(elem_id, "array element type"));
    if (!value_type_valid(elem_id)) {
      return fail_at(at, "unknown array element type ", elem_id, " for key '", key, "'");
    }
    REALM_TRY(read_u64(count, "array length"));
    auto elem = static_cast<ValueType>(elem_id);
    // Smallest encoding of one element: its fixed size, 8 for a string length, 12 for an array
    // header. Bounding by the file keeps a forged count from allocating.
    uint64_t min_size = elem == ValueType::STRING  ? 8
                        : elem == ValueType::ARRAY ? 12
                                                   : value_type_size(elem);
    if (count > remaining() / min_size) {
      return fail_at(at, "array length ", count, " of ", value_type_name(elem), " for key '", key,
                     "' exceeds the ", remaining(), " bytes left in the file");
    }
    if (elem == ValueType::STRING) {
      std::vector<std::string> items(count);
      for (auto& s : items) REALM_TRY(read_string(s, "string array element"));
      out = Value::string_array(std::move(items));
    } else if (elem == ValueType::ARRAY) {
      std::vector<Value> items(count);
      for (auto& v : items) REALM_TRY(read_value(ValueType::ARRAY, v, key, depth + 1));
      out = Value::array_of_arrays(std::move(items));
    } else {
      std::vector<uint8_t> raw(count * min_size);
      REALM_TRY(read_raw(raw.data(), raw.size(), "array data"));
      if (elem == ValueType::BOOL) {
        for (uint8_t b : raw) {
          if (b > 1) return fail_at(at, "bool array element ", b, " in key '", key, "'");
        }
      }
      out = Value::numeric_array(elem, std::move(raw));
    }
    return {};
  }

  Status read_tensor_info(TensorInfo& t) {
    uint64_t at = pos_;
    REALM_TRY(read_string(t.name, "tensor name"));
    if (t.name.empty() || t.name.size() > kMaxTensorName) {
      return fail_at(at, "tensor name length ", t.name.size(), " is outside 1..", kMaxTensorName);
    }
    uint32_t n_dims = 0;
    REALM_TRY(read_u32(n_dims, "tensor dimension count"));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return fail_at(at, "tensor '", t.name, "' has ", n_dims, " dimensions (allowed 1..", kMaxDims,
                     ")");
    }
    t.dims.resize(n_dims);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      REALM_TRY(read_u64(t.dims[d], "tensor dimension"));
      if (t.dims[d] == 0 || t.dims[d] > static_cast<uint64_t>(INT64_MAX)) {
        return fail_at(at, "tensor '", t.name, "' has invalid dimension ", d, " = ", t.dims[d]);
      }
      auto m = checked_mul<uint64_t>(n, t.dims[d]);
      if (!m || *m > static_cast<uint64_t>(INT64_MAX)) {
        return fail_at(at, "tensor '", t.name, "' element count overflows");
      }
      n = *m;
    }
    t.n_elements = n;
    uint32_t type_id = 0;
    REALM_TRY(read_u32(type_id, "tensor type"));
    auto layout = type_layout(type_id);
    if (!layout) {
      return fail_at(at, "tensor '", t.name, "' has unknown type id ", type_id);
    }
    t.type = layout->type;
    if (t.dims[0] % layout->block_size != 0) {
      return fail_at(at, "tensor '", t.name, "' row length ", t.dims[0],
                     " is not a multiple of the ", layout->name, " block size ",
                     layout->block_size);
    }
    auto nb = row_bytes(t.type, n);
    if (!nb) return fail_at(at, "tensor '", t.name, "' byte size overflows");
    t.n_bytes = *nb;
    REALM_TRY(read_u64(t.offset, "tensor data offset"));
    return {};
  }

  Status check_tensor_ranges(GgufFile& f) {
    uint64_t data_size = bytes_.size() - f.data_offset_;
    std::vector<size_t> order(f.tensors_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (auto& t : f.tensors_) {
      if (t.offset % f.alignment_ != 0) {
        return fail("tensor '", t.name, "' data offset ", t.offset,
                    " is not a multiple of the alignment ", f.alignment_);
      }
      if (!range_within(t.offset, t.n_bytes, data_size)) {
        return fail("tensor '", t.name, "' data [", t.offset, ", +", t.n_bytes,
                    ") lies outside the data section of ", data_size,
                    " bytes (file truncated or offset corrupt)");
      }
      t.data = bytes_.data() + f.data_offset_ + t.offset;
    }
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return f.tensors_[a].offset < f.tensors_[b].offset; });
    for (size_t i = 1; i < order.size(); ++i) {
      const auto& prev = f.tensors_[order[i - 1]];
      const auto& cur = f.tensors_[order[i]];
      if (cur.offset < prev.offset + prev.n_bytes) {
        return fail("tensors '", prev.name, "' [", prev.offset, ", +", prev.n_bytes, ") and '",
                    cur.name, "' [", cur.offset, ", +", cur.n_bytes, ") overlap");
      }
    }
    return {};
  }

  std::span<const uint8_t> bytes_;
  uint64_t pos_ = 0;
};

Expected<GgufFile> GgufFile::parse(std::span<const uint8_t> bytes) {
  GgufFile f;
  Parser p(bytes);
  REALM_TRY(p.parse(f));
  return f;
}

Expected<GgufFile> GgufFile::open(const std::string& path) {
  auto file = MappedFile::open(path);
  if (!file) return file.take_error();
  GgufFile f;
  f.file_ = std::move(*file);
  Parser p(f.file_.bytes());
  auto st = p.parse(f);
  if (!st) return make_error(path, ": ", st.error().message);
  return f;
}

const Value* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

std::optional<std::string_view> GgufFile::get_string(std::string_view key) const {
  const Value* v = find(key);
  return v ? v->as_string() : std::nullopt;
}
std::optional<uint64_t> GgufFile::get_uint(std::string_view key) const {
  const Value* v = find(key);
  return v ? v->as_uint() : std::nullopt;
}
std::optional<double> GgufFile::get_float(std::string_view key) const {
  const Value* v = find(key);
  return v ? v->as_float() : std::nullopt;
}
std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const Value* v = find(key);
  return v ? v->as_bool() : std::nullopt;
}
std::string_view GgufFile::architecture() const {
  return get_string("general.architecture").value_or("");
}

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace realm::gguf
