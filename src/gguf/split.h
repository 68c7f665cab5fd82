// Split GGUF files (llama.cpp's gguf-split convention): one model in N files named
// PREFIX-00001-of-0000N.gguf ... ; every shard is a complete GGUF file holding some of the
// tensors, the first also holds the model's metadata; each carries split.no (0-based, u16),
// split.count (u16) and split.tensors.count (i32, the tensors of all shards).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/reader.h"
#include "util/expected.h"

namespace realm::gguf {

inline constexpr std::string_view kSplitNo = "split.no";
inline constexpr std::string_view kSplitCount = "split.count";
inline constexpr std::string_view kSplitTensorsCount = "split.tensors.count";
inline constexpr uint64_t kMaxSplits = 9999;

// PREFIX-%05d-of-%05d.gguf for shard `no` (1-based) of `count`.
std::string split_path(std::string_view prefix, uint64_t no, uint64_t count);

// The prefix, shard number (1-based) and count of a shard's file name, if it is one.
struct SplitName {
  std::string prefix;
  uint64_t no = 0;
  uint64_t count = 0;
};
std::optional<SplitName> parse_split_path(std::string_view path);

// Opens a model that may be split: `path` is a plain GGUF file (one element) or any shard of a
// split set, whose siblings are found beside it by name. The shards come back in order, checked:
// every shard present, split.no / split.count consistent, no tensor twice, the tensor total equal
// to split.tensors.count. Errors name the file and the problem.
Expected<std::vector<GgufFile>> open_split(const std::string& path);

// Writes `in` as shards of at most `max_tensors` tensors (and, when max_bytes > 0, at most
// max_bytes of tensor data unless one tensor alone is larger), PREFIX-0000K-of-0000N.gguf; the
// first shard gets every key of `in`, the others only the split keys. Returns the paths written.
Expected<std::vector<std::string>> write_split(const GgufFile& in, const std::string& prefix,
                                               uint64_t max_tensors, uint64_t max_bytes = 0);

}  // namespace realm::gguf
