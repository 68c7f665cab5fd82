#include "model/kv_cache.h"

#include <sys/mman.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace realm::model {

std::optional<KvType> kv_type_from_name(std::string_view name) {
  if (name == "f16") return KvType::F16;
  if (name == "f32") return KvType::F32;
  return std::nullopt;
}

BlockKey root_key(std::string_view ns) {
  const XXH128_hash_t h = XXH3_128bits_withSeed(ns.data(), ns.size(), 0x7265616c6d6b76ULL);
  return {h.low64, h.high64};
}

BlockKey chain_key(const BlockKey& prev, std::span<const int32_t> tokens) {
  int32_t buf[4 + kKvBlockTokens];
  const size_t n = std::min(tokens.size(), static_cast<size_t>(kKvBlockTokens));
  std::memcpy(buf, &prev.lo, 8);
  std::memcpy(buf + 2, &prev.hi, 8);
  std::memcpy(buf + 4, tokens.data(), n * sizeof(int32_t));
  const XXH128_hash_t h = XXH3_128bits(buf, (4 + n) * sizeof(int32_t));
  return {h.low64, h.high64};
}

// ---- KvPool -------------------------------------------------------------------------------------

namespace {
size_t row_bytes_of(const Hparams& hp, KvType type) {
  return static_cast<size_t>(hp.n_embd_kv()) * (type == KvType::F16 ? 2 : 4);
}
}  // namespace

size_t KvPool::block_bytes(const Hparams& hp, KvType type) {
  return static_cast<size_t>(hp.n_layer) * 2 * kKvBlockTokens * row_bytes_of(hp, type);
}

int64_t KvPool::blocks_for_bytes(const Hparams& hp, KvType type, uint64_t bytes) {
  return std::max<int64_t>(1, static_cast<int64_t>(bytes / block_bytes(hp, type)));
}

Expected<std::shared_ptr<KvPool>> KvPool::create(const Hparams& hp, KvType type, int64_t n_blocks) {
  if (n_blocks < 1 || n_blocks > INT32_MAX) {
    return make_error("KV pool: ", n_blocks, " blocks is out of range");
  }
  const size_t bb = block_bytes(hp, type);
  const size_t total = bb * static_cast<size_t>(n_blocks);
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return make_error(ErrorCode::LIMIT, "KV pool: cannot reserve ", total,
                      " bytes: ", std::strerror(errno));
  }
  return std::shared_ptr<KvPool>(
      new KvPool(type, n_blocks, row_bytes_of(hp, type), bb, static_cast<uint8_t*>(p)));
}

KvPool::KvPool(KvType type, int64_t n_blocks, size_t row, size_t block_bytes, uint8_t* base)
    : type_(type),
      n_blocks_(n_blocks),
      row_(row),
      block_bytes_(block_bytes),
      base_(base),
      meta_(static_cast<size_t>(n_blocks)) {
  free_.reserve(static_cast<size_t>(n_blocks));
  // Handed out lowest first (a small load touches few pages).
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

KvPool::~KvPool() {
  munmap(base_, block_bytes_ * static_cast<size_t>(n_blocks_));
}

int64_t KvPool::used_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_;
}

int64_t KvPool::available_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(free_.size() + lru_.size());
}

int64_t KvPool::cached_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(index_.size());
}

int32_t KvPool::alloc() {
  std::lock_guard<std::mutex> lock(mu_);
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.front();
    lru_.pop_front();
    Meta& m = meta_[static_cast<size_t>(b)];
    index_.erase(m.key);
    m.published = false;
  } else {
    return -1;
  }
  meta_[static_cast<size_t>(b)].refs = 1;
  ++used_;
  return b;
}

void KvPool::ref_locked(int32_t b) {
  Meta& m = meta_[static_cast<size_t>(b)];
  if (m.refs++ == 0) {
    // Only a cached block is taken back from zero references.
    if (m.published) lru_.erase(m.lru);
    ++used_;
  }
}

void KvPool::ref(int32_t b) {
  std::lock_guard<std::mutex> lock(mu_);
  ref_locked(b);
}

void KvPool::unref(int32_t b) {
  std::lock_guard<std::mutex> lock(mu_);
  Meta& m = meta_[static_cast<size_t>(b)];
  if (--m.refs > 0) return;
  --used_;
  if (m.published) {
    m.lru = lru_.insert(lru_.end(), b);
  } else {
    free_.push_back(b);
  }
}

bool KvPool::writable(int32_t b) const {
  std::lock_guard<std::mutex> lock(mu_);
  const Meta& m = meta_[static_cast<size_t>(b)];
  return m.refs == 1 && !m.published;
}

bool KvPool::publish(int32_t b, const BlockKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  Meta& m = meta_[static_cast<size_t>(b)];
  if (m.published || index_.count(key)) return false;
  index_.emplace(key, b);
  m.published = true;
  m.key = key;
  if (m.refs == 0) m.lru = lru_.insert(lru_.end(), b);
  return true;
}

int32_t KvPool::lookup(const BlockKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return -1;
  ref_locked(it->second);
  return it->second;
}

// ---- KvCache ------------------------------------------------------------------------------------

namespace {
std::shared_ptr<KvPool> own_pool(const Hparams& hp, int64_t n_ctx, KvType type) {
  const int64_t n = std::max<int64_t>(1, (n_ctx + kKvBlockTokens - 1) / kKvBlockTokens);
  auto pool = KvPool::create(hp, type, n);
  if (!pool) throw std::bad_alloc();
  return *pool;
}
}  // namespace

KvCache::KvCache(const Hparams& hp, int64_t n_ctx, KvType type)
    : KvCache(own_pool(hp, n_ctx, type), n_ctx) {}

KvCache::KvCache(std::shared_ptr<KvPool> pool, int64_t n_ctx)
    : pool_(std::move(pool)), n_ctx_(n_ctx) {}

KvCache::~KvCache() {
  clear();
}

void KvCache::drop_blocks_from(size_t first) {
  for (size_t i = first; i < blocks_.size(); ++i) pool_->unref(blocks_[i]);
  blocks_.resize(std::min(first, blocks_.size()));
}

void KvCache::truncate(int64_t n) {
  if (n < 0 || n >= size_) return;
  size_ = n;
  drop_blocks_from(static_cast<size_t>((n + kKvBlockTokens - 1) / kKvBlockTokens));
}

void KvCache::clear() {
  drop_blocks_from(0);
  size_ = 0;
}

int64_t KvCache::blocks_needed(int64_t n) const {
  const int64_t want = (n + kKvBlockTokens - 1) / kKvBlockTokens;
  int64_t need = std::max<int64_t>(0, want - n_blocks());
  // The partly filled last block is copied before it is written when it is shared.
  if (n > size_ && size_ % kKvBlockTokens != 0 && !pool_->writable(blocks_.back())) ++need;
  return need;
}

bool KvCache::reserve(int64_t n) {
  if (n > size_ && size_ % kKvBlockTokens != 0) {
    const int32_t last = blocks_.back();
    if (!pool_->writable(last)) {
      const int32_t copy = pool_->alloc();
      if (copy < 0) return false;
      std::memcpy(pool_->k(copy, 0), pool_->k(last, 0), pool_->block_bytes());
      pool_->unref(last);
      blocks_.back() = copy;
    }
  }
  const auto want = static_cast<size_t>((n + kKvBlockTokens - 1) / kKvBlockTokens);
  while (blocks_.size() < want) {
    const int32_t b = pool_->alloc();
    if (b < 0) return false;
    blocks_.push_back(b);
  }
  return true;
}

void KvCache::attach(int32_t block) {
  // Blocks past size() (reserved, unwritten) are given back first.
  drop_blocks_from(static_cast<size_t>(size_ / kKvBlockTokens));
  blocks_.push_back(block);
  size_ += kKvBlockTokens;
}

void KvCache::share(const KvCache& other) {
  clear();
  const auto n = static_cast<size_t>((other.size_ + kKvBlockTokens - 1) / kKvBlockTokens);
  for (size_t i = 0; i < n; ++i) {
    pool_->ref(other.blocks_[i]);
    blocks_.push_back(other.blocks_[i]);
  }
  size_ = other.size_;
}

}  // namespace realm::model
