// The packed-weight cache (LoadOptions::pack_cache_dir): the weights Model::load repacks for the
// kernels, written once into a file and mapped read-only (MAP_SHARED) by later loads, so a start
// does no packing and every process serving the model shares the same page-cache pages.
//
// File layout (little-endian): a 4 KiB header page
//   "REALMPK1", u32 kPackLayoutVersion, u32 n_tensors, u64 source key, u64 file bytes,
//   u64 XXH3 of the tensor table, then the table: per tensor {char name[64], u32 type,
//   u32 reserved, u64 offset, u64 bytes, u64 XXH3 of the bytes};
// then each tensor's packed bytes at its offset (page-aligned). The source key hashes, for every
// shard, its size, modification time and header bytes (metadata and tensor infos), plus the
// sha256 the caller knows. A file whose key, table or any checksum differs is not used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "util/expected.h"

namespace realm::model::detail {

struct PackTensor {
  std::string name;
  gguf::GgmlType type;
  const uint8_t* src;  // rows as stored, in the mapped source
  int64_t n_rows;
  int64_t n_cols;
  size_t bytes;
};

// A mapping holding packed tensors; `data[i]` is tensors[i]'s packed bytes inside it.
struct PackedMap {
  void* addr = nullptr;
  size_t bytes = 0;
  std::vector<const uint8_t*> data;
};
void unmap(PackedMap& m);

// The cache file for these tensors of these sources in `dir`: the first source's file stem plus a
// hash of the layout version and the packed set (kernel paths that pack different sets do not
// share a file).
std::string cache_path(const std::string& dir, const std::vector<gguf::GgufFile>& sources,
                       const std::vector<PackTensor>& tensors);
uint64_t source_key(const std::vector<gguf::GgufFile>& sources, const std::string& sha256);

// Maps `path` and verifies it against the key and the tensors. The error is why it is not used.
Expected<PackedMap> map_cache(const std::string& path, uint64_t key,
                              const std::vector<PackTensor>& tensors);
// Packs the tensors into a new cache file at `path` (written under a temporary name, synced,
// renamed) and returns its mapping, read-only. The error is why none was written (no space,
// read-only directory...): the caller then packs into memory.
Expected<PackedMap> write_cache(const std::string& path, uint64_t key,
                                const std::vector<PackTensor>& tensors);

// The mapped source pages of a tensor that is packed are not read again: drops them from this
// process right after packing, so a load never holds the source and the packed copy whole.
void drop_source_pages(const PackTensor& t);

// Runs fn(0..n-1) on up to 16 threads; the first error wins.
Status parallel_for(size_t n, const std::function<Status(size_t)>& fn);

}  // namespace realm::model::detail
