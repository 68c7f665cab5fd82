// The paged KV cache: one pool of fixed-size blocks per model (a KV memory budget), sequences that
// take blocks as they grow and read them through their block table, and a prefix cache of full
// blocks keyed by (namespace, the token chain up to them).
//
// A block holds kKvBlockTokens positions of every layer's keys and values. The attention reads a
// sequence block by block in position order, so a paged sequence gives the same bits as one
// contiguous cache (the kernels resume their chains across blocks: tensor/kernels/kernels.h).
//
// Sharing: a block has a reference count; a full block may also be published in the prefix cache
// under its key. A block that is published or referenced twice is read-only: a sequence about to
// write into it takes a private copy first (copy-on-write: n choices of one prompt, a truncation
// into a cached prefix). Unreferenced published blocks stay findable until the pool needs them,
// least recently used first.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/hparams.h"
#include "util/expected.h"

namespace realm::model {

enum class KvType { F16, F32 };
// "f16" / "f32".
std::optional<KvType> kv_type_from_name(std::string_view name);

// Positions per block.
inline constexpr int64_t kKvBlockTokens = 32;

// A full block's identity: 128 bits of XXH3 over the namespace and the whole token chain up to the
// block's end (a chain of per-block hashes, each over the previous key and the block's tokens).
struct BlockKey {
  uint64_t lo = 0, hi = 0;
  bool operator==(const BlockKey&) const = default;
};
struct BlockKeyHash {
  size_t operator()(const BlockKey& k) const { return static_cast<size_t>(k.lo); }
};
// The key before a namespace's first block ("" is allowed: one namespace like any other).
BlockKey root_key(std::string_view ns);
// The key of the block holding `tokens` (kKvBlockTokens of them) after the block keyed `prev`.
BlockKey chain_key(const BlockKey& prev, std::span<const int32_t> tokens);

class KvPool {
 public:
  // n_blocks blocks of `type`, reserved as one anonymous mapping (pages are committed when first
  // written, so the resident size follows use).
  static Expected<std::shared_ptr<KvPool>> create(const Hparams& hp, KvType type, int64_t n_blocks);
  // The blocks of `bytes` (at least one).
  static int64_t blocks_for_bytes(const Hparams& hp, KvType type, uint64_t bytes);
  static size_t block_bytes(const Hparams& hp, KvType type);
  ~KvPool();
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  KvType type() const { return type_; }
  int64_t n_blocks() const { return n_blocks_; }
  size_t block_bytes() const { return block_bytes_; }
  // Bytes of one position of one layer's keys (or values).
  size_t row_bytes() const { return row_; }

  // Blocks referenced by sequences.
  int64_t used_blocks() const;
  // Blocks a sequence can take now: free ones and unreferenced cached ones.
  int64_t available_blocks() const;
  // Published blocks (referenced or not).
  int64_t cached_blocks() const;

  // A private block (one reference): a free one, else the least recently used unreferenced cached
  // block (unpublished). -1 when every block is referenced.
  int32_t alloc();
  void ref(int32_t b);
  // Drops a reference; at zero a published block stays cached (evictable), others become free.
  void unref(int32_t b);
  // Whether a sequence holding b may write into it: one reference and not published.
  bool writable(int32_t b) const;
  // Publishes the full block b under key. False (nothing changes) when key has a block already.
  bool publish(int32_t b, const BlockKey& key);
  // The block published under key with one more reference (marked recently used), or -1.
  int32_t lookup(const BlockKey& key);

  uint8_t* k(int32_t b, int64_t layer) const {
    return base_ + static_cast<size_t>(b) * block_bytes_ +
           static_cast<size_t>(layer) * 2 * kKvBlockTokens * row_;
  }
  uint8_t* v(int32_t b, int64_t layer) const { return k(b, layer) + kKvBlockTokens * row_; }

 private:
  KvPool(KvType type, int64_t n_blocks, size_t row, size_t block_bytes, uint8_t* base);
  void ref_locked(int32_t b);  // mu_ held
  struct Meta {
    int32_t refs = 0;
    bool published = false;
    BlockKey key;
    std::list<int32_t>::iterator lru;  // valid when published and unreferenced
  };
  KvType type_;
  int64_t n_blocks_;
  size_t row_, block_bytes_;
  uint8_t* base_;
  mutable std::mutex mu_;
  std::vector<Meta> meta_;
  std::vector<int32_t> free_;
  std::list<int32_t> lru_;  // published, unreferenced; front = least recently used
  std::unordered_map<BlockKey, int32_t, BlockKeyHash> index_;
  int64_t used_ = 0;
};

// The keys and values of one sequence for every layer, up to n_ctx positions, in blocks of a pool.
class KvCache {
 public:
  // A sequence with a pool of its own, big enough for n_ctx positions (tools and tests).
  KvCache(const Hparams& hp, int64_t n_ctx, KvType type);
  // A sequence on a shared pool.
  KvCache(std::shared_ptr<KvPool> pool, int64_t n_ctx);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int64_t n_ctx() const { return n_ctx_; }
  // Positions filled so far (the next token goes at position size()).
  int64_t size() const { return size_; }
  KvType type() const { return pool_->type(); }
  // Keeps the first n positions (n <= size()); blocks past them go back to the pool.
  void truncate(int64_t n);
  // Bytes of the blocks this sequence holds.
  size_t bytes() const { return blocks_.size() * pool_->block_bytes(); }
  int64_t n_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  int32_t block(int64_t i) const { return blocks_[static_cast<size_t>(i)]; }
  const std::shared_ptr<KvPool>& pool() const { return pool_; }

  // Pool blocks that reserve(n) would take.
  int64_t blocks_needed(int64_t n) const;
  // Makes positions [size(), n) writable: takes blocks up to position n and replaces a shared
  // block those positions fall in by a private copy. False when the pool ran out (the blocks taken
  // so far are kept; a later call goes on).
  bool reserve(int64_t n);
  // Appends a full cached block (from KvPool::lookup, whose reference passes to this sequence);
  // size() must be a multiple of kKvBlockTokens.
  void attach(int32_t block);
  // Shares every block of `other` (which must be on the same pool): this sequence becomes a copy
  // of it, written copy-on-write. This sequence must be empty.
  void share(const KvCache& other);
  // Gives every block back (size 0).
  void clear();

 private:
  friend class Model;
  friend struct Forward;
  uint8_t* k_at(int64_t layer, int64_t pos) const {
    return pool_->k(blocks_[static_cast<size_t>(pos / kKvBlockTokens)], layer) +
           static_cast<size_t>(pos % kKvBlockTokens) * pool_->row_bytes();
  }
  uint8_t* v_at(int64_t layer, int64_t pos) const {
    return pool_->v(blocks_[static_cast<size_t>(pos / kKvBlockTokens)], layer) +
           static_cast<size_t>(pos % kKvBlockTokens) * pool_->row_bytes();
  }
  void drop_blocks_from(size_t first);

  std::shared_ptr<KvPool> pool_;
  int64_t n_ctx_;
  int64_t size_ = 0;
  std::vector<int32_t> blocks_;
};

}  // namespace realm::model
