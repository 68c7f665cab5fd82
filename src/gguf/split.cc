#include "gguf/split.h"

#include <cstdio>
#include <set>

#include "gguf/writer.h"

namespace realm::gguf {

std::string split_path(std::string_view prefix, uint64_t no, uint64_t count) {
  char tail[64];
  std::snprintf(tail, sizeof tail, "-%05llu-of-%05llu.gguf", static_cast<unsigned long long>(no),
                static_cast<unsigned long long>(count));
  return std::string(prefix) + tail;
}

std::optional<SplitName> parse_split_path(std::string_view path) {
  // "-NNNNN-of-NNNNN.gguf" is 20 characters.
  constexpr size_t kTail = 20;
  if (path.size() <= kTail) return std::nullopt;
  const std::string_view tail = path.substr(path.size() - kTail);
  auto digits = [](std::string_view s, uint64_t& out) {
    out = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      out = out * 10 + static_cast<uint64_t>(c - '0');
    }
    return true;
  };
  SplitName n;
  if (tail[0] != '-' || tail.substr(6, 4) != "-of-" || tail.substr(15) != ".gguf" ||
      !digits(tail.substr(1, 5), n.no) || !digits(tail.substr(10, 5), n.count) || n.no == 0 ||
      n.no > n.count) {
    return std::nullopt;
  }
  n.prefix = std::string(path.substr(0, path.size() - kTail));
  return n;
}

Expected<std::vector<GgufFile>> open_split(const std::string& path) {
  auto first = GgufFile::open(path);
  if (!first) return first.take_error();
  std::vector<GgufFile> shards;
  const auto count = first->get_uint(kSplitCount);
  if (!count || *count <= 1) {
    if (count && *count == 0) return make_error(path, ": split.count is 0");
    shards.push_back(std::move(*first));
    return shards;
  }
  if (*count > kMaxSplits) return make_error(path, ": split.count ", *count, " is too large");
  const auto name = parse_split_path(path);
  if (!name || name->count != *count) {
    return make_error(path, ": split.count is ", *count,
                      " but the file name is not PREFIX-NNNNN-of-", split_path("", 1, *count),
                      " (the shards are found by name)");
  }
  const auto total = first->get_uint(kSplitTensorsCount);
  if (!total) return make_error(path, ": a shard without split.tensors.count");
  shards.reserve(*count);
  std::set<std::string, std::less<>> names;
  uint64_t n_tensors = 0;
  for (uint64_t i = 1; i <= *count; ++i) {
    const std::string p = split_path(name->prefix, i, *count);
    Expected<GgufFile> f = (i == name->no) ? std::move(first) : GgufFile::open(p);
    if (!f) {
      return make_error("shard ", i, " of ", *count, " of ", path, ": ", f.error().message);
    }
    const auto no = f->get_uint(kSplitNo);
    const auto c = f->get_uint(kSplitCount);
    if (!no || *no != i - 1 || !c || *c != *count) {
      return make_error(p, ": split.no/split.count say ", no ? std::to_string(*no) : "nothing", "/",
                        c ? std::to_string(*c) : "nothing", ", expected ", i - 1, "/", *count);
    }
    for (const TensorInfo& t : f->tensors()) {
      if (!names.insert(t.name).second) {
        return make_error(p, ": tensor '", t.name, "' is also in an earlier shard");
      }
    }
    n_tensors += f->tensors().size();
    shards.push_back(std::move(*f));
  }
  if (n_tensors != *total) {
    return make_error(path, ": the shards hold ", n_tensors, " tensors, split.tensors.count says ",
                      *total);
  }
  // The model's metadata is in the first shard: it goes first whichever shard was named.
  return shards;
}

Expected<std::vector<std::string>> write_split(const GgufFile& in, const std::string& prefix,
                                               uint64_t max_tensors, uint64_t max_bytes) {
  if (in.find(kSplitCount) != nullptr) {
    return make_error("the input is already a shard of a split model");
  }
  if (max_tensors == 0) return make_error("max tensors per shard must be at least 1");
  // Group the tensors in file order.
  std::vector<std::vector<const TensorInfo*>> groups;
  uint64_t bytes = 0;
  for (const TensorInfo& t : in.tensors()) {
    if (groups.empty() || groups.back().size() >= max_tensors ||
        (max_bytes > 0 && !groups.back().empty() && bytes + t.n_bytes > max_bytes)) {
      groups.emplace_back();
      bytes = 0;
    }
    groups.back().push_back(&t);
    bytes += t.n_bytes;
  }
  if (groups.empty()) groups.emplace_back();
  if (groups.size() > kMaxSplits) return make_error(groups.size(), " shards is too many");
  const uint64_t count = groups.size();
  std::vector<std::string> paths;
  for (uint64_t i = 0; i < count; ++i) {
    GgufWriter w(in.version());
    if (i == 0) {
      for (const KeyValue& kv : in.metadata()) w.add_kv(kv.key, kv.value);
    } else if (const Value* a = in.find("general.alignment")) {
      w.add_kv("general.alignment", *a);
    }
    w.set_kv(std::string(kSplitNo), Value::scalar(ValueType::UINT16, i));
    w.set_kv(std::string(kSplitCount), Value::scalar(ValueType::UINT16, count));
    w.set_kv(std::string(kSplitTensorsCount),
             Value::i32(static_cast<int32_t>(in.tensors().size())));
    for (const TensorInfo* t : groups[i]) {
      w.add_tensor(t->name, static_cast<uint32_t>(t->type), t->dims, t->bytes());
    }
    paths.push_back(split_path(prefix, i + 1, count));
    REALM_TRY(w.write_file(paths.back()));
  }
  return paths;
}

}  // namespace realm::gguf
