#include "gguf/writer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace realm::gguf {
namespace {

void put_raw(std::vector<uint8_t>& out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}
void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  put_raw(out, &v, 4);
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  put_raw(out, &v, 8);
}
void put_string(std::vector<uint8_t>& out, std::string_view s) {
  put_u64(out, s.size());
  put_raw(out, s.data(), s.size());
}

// Writes the payload of a value (without its leading type id).
void put_value(std::vector<uint8_t>& out, const Value& v) {
  switch (v.type()) {
    case ValueType::STRING:
      put_string(out, *v.as_string());
      return;
    case ValueType::ARRAY: {
      put_u32(out, static_cast<uint32_t>(v.elem_type()));
      put_u64(out, v.size());
      if (v.elem_type() == ValueType::STRING) {
        for (const auto& s : v.strings()) put_string(out, s);
      } else if (v.elem_type() == ValueType::ARRAY) {
        for (const auto& a : v.arrays()) put_value(out, a);
      } else {
        put_raw(out, v.raw().data(), v.raw().size());
      }
      return;
    }
    default: {
      uint64_t bits = v.raw_bits();
      put_raw(out, &bits, value_type_size(v.type()));
      return;
    }
  }
}

uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) / a * a;
}

struct VectorSink {
  std::vector<uint8_t>& out;
  bool write(const void* p, size_t n) {
    put_raw(out, p, n);
    return true;
  }
};

struct FileSink {
  std::FILE* f;
  bool ok = true;
  bool write(const void* p, size_t n) {
    if (ok && n > 0) ok = std::fwrite(p, 1, n, f) == n;
    return ok;
  }
};

}  // namespace

GgufWriter GgufWriter::copy_of(const GgufFile& file) {
  GgufWriter w(file.version());
  for (const auto& kv : file.metadata()) w.add_kv(kv.key, kv.value);
  for (const auto& t : file.tensors()) {
    w.add_tensor(t.name, static_cast<uint32_t>(t.type), t.dims, t.bytes(), t.offset);
  }
  return w;
}

void GgufWriter::add_kv(std::string key, Value value) {
  kvs_.push_back({std::move(key), std::move(value)});
}

void GgufWriter::set_kv(const std::string& key, Value value) {
  for (auto& kv : kvs_) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  add_kv(key, std::move(value));
}

void GgufWriter::add_tensor(std::string name, uint32_t type_id, std::vector<uint64_t> dims,
                            std::span<const uint8_t> data, std::optional<uint64_t> offset) {
  tensors_.push_back({std::move(name), type_id, std::move(dims), data, offset});
}

uint64_t GgufWriter::alignment() const {
  for (const auto& kv : kvs_) {
    if (kv.key == "general.alignment") {
      auto a = kv.value.as_uint();
      if (a && *a > 0 && (*a & (*a - 1)) == 0) return *a;
    }
  }
  return kDefaultAlignment;
}

std::vector<uint8_t> GgufWriter::header(std::vector<uint64_t>& offsets) const {
  std::vector<uint8_t> out;
  put_u32(out, kMagic);
  put_u32(out, version_);
  put_u64(out, tensors_.size());
  put_u64(out, kvs_.size());
  for (const auto& kv : kvs_) {
    put_string(out, kv.key);
    put_u32(out, static_cast<uint32_t>(kv.value.type()));
    put_value(out, kv.value);
  }
  const uint64_t align = alignment();
  uint64_t next = 0;
  offsets.clear();
  for (const auto& t : tensors_) {
    put_string(out, t.name);
    put_u32(out, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) put_u64(out, d);
    put_u32(out, t.type_id);
    uint64_t off = t.offset.value_or(next);
    put_u64(out, off);
    offsets.push_back(off);
    next = align_up(off + t.data.size(), align);
  }
  // llama.cpp pads the header to the alignment only when tensor data follows.
  if (!tensors_.empty()) out.resize(align_up(out.size(), align), 0);
  return out;
}

template <typename Sink>
void GgufWriter::write_to(Sink& sink) const {
  std::vector<uint64_t> offsets;
  std::vector<uint8_t> head = header(offsets);
  sink.write(head.data(), head.size());
  const uint64_t align = alignment();
  static const uint8_t zeros[4096] = {};
  auto write_zeros = [&](uint64_t n) {
    for (; n > 0; n -= std::min<uint64_t>(n, sizeof zeros)) {
      sink.write(zeros, std::min<uint64_t>(n, sizeof zeros));
    }
  };
  // Data in offset order; gaps are zero-filled, every tensor is padded to the alignment.
  std::vector<size_t> order(tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return offsets[a] < offsets[b]; });
  uint64_t pos = 0;  // within the data section
  for (size_t i : order) {
    if (offsets[i] < pos) continue;  // a forged overlapping offset: written in the header only
    write_zeros(offsets[i] - pos);
    sink.write(tensors_[i].data.data(), tensors_[i].data.size());
    pos = offsets[i] + tensors_[i].data.size();
    uint64_t padded = align_up(pos, align);
    write_zeros(padded - pos);
    pos = padded;
  }
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  std::vector<uint8_t> out;
  VectorSink sink{out};
  write_to(sink);
  return out;
}

Status GgufWriter::write_file(const std::string& path) const {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return make_error("cannot create '", path, "': ", std::strerror(errno));
  FileSink sink{f};
  write_to(sink);
  bool closed = std::fclose(f) == 0;
  if (!sink.ok || !closed) return make_error("error writing '", path, "': ", std::strerror(errno));
  return {};
}

}  // namespace realm::gguf
