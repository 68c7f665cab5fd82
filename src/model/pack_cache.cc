#include "model/pack_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <system_error>
#include <thread>

#include "tensor/kernels/kernels.h"

namespace realm::model::detail {
namespace {

constexpr char kMagic[8] = {'R', 'E', 'A', 'L', 'M', 'P', 'K', '1'};
constexpr size_t kHeaderPage = 4096;
constexpr size_t kNameBytes = 64;

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t n_tensors;
  uint64_t source_key;
  uint64_t file_bytes;
  uint64_t table_hash;
};
struct Entry {
  char name[kNameBytes];
  uint32_t type;
  uint32_t reserved;
  uint64_t offset;
  uint64_t bytes;
  uint64_t hash;
};
static_assert(sizeof(Header) == 40 && sizeof(Entry) == 96);

size_t page_size() {
  return static_cast<size_t>(sysconf(_SC_PAGESIZE));
}
size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

// Offsets of every tensor and the file size; the header and table must fit before the first.
Expected<std::vector<uint64_t>> layout(const std::vector<PackTensor>& tensors, uint64_t& total) {
  const size_t table = sizeof(Header) + tensors.size() * sizeof(Entry);
  uint64_t off = round_up(std::max(table, kHeaderPage), page_size());
  std::vector<uint64_t> offsets;
  for (const PackTensor& t : tensors) {
    if (t.name.size() >= kNameBytes) return make_error("tensor name '", t.name, "' is too long");
    offsets.push_back(off);
    off = round_up(off + t.bytes, page_size());
  }
  total = off;
  return offsets;
}

std::vector<Entry> table_of(const std::vector<PackTensor>& tensors,
                            const std::vector<uint64_t>& offsets) {
  std::vector<Entry> e(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    std::memset(&e[i], 0, sizeof(Entry));
    std::memcpy(e[i].name, tensors[i].name.data(), tensors[i].name.size());
    e[i].type = static_cast<uint32_t>(tensors[i].type);
    e[i].offset = offsets[i];
    e[i].bytes = tensors[i].bytes;
  }
  return e;
}

// The table's hash covers names, types, offsets, sizes and the data hashes.
uint64_t table_hash(const std::vector<Entry>& e) {
  return XXH3_64bits(e.data(), e.size() * sizeof(Entry));
}

std::string errno_text(int e) {
  return std::error_code(e, std::generic_category()).message();
}

}  // namespace

Status parallel_for(size_t n, const std::function<Status(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::mutex mu;
  Status status;
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) {
      auto st = fn(i);
      if (!st) {
        std::lock_guard<std::mutex> lock(mu);
        if (status) status = std::move(st);
      }
    }
  };
  const unsigned n_threads =
      std::min<unsigned>(std::max(1u, std::thread::hardware_concurrency()), 16u);
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < n_threads && t < n; ++t) {
    try {
      threads.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // no more threads (process limits): the ones running, and this one, do the rest
    }
  }
  work();
  for (auto& t : threads) t.join();
  return status;
}

void drop_source_pages(const PackTensor& t) {
  const size_t page = page_size();
  const auto begin = reinterpret_cast<uintptr_t>(t.src);
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = (begin + t.bytes) / page * page;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void unmap(PackedMap& m) {
  if (m.addr != nullptr) munmap(m.addr, m.bytes);
  m = {};
}

uint64_t source_key(const std::vector<gguf::GgufFile>& sources, const std::string& sha256) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  const uint32_t version = tensor::kPackLayoutVersion;
  XXH3_64bits_update(st, &version, sizeof version);
  for (const gguf::GgufFile& f : sources) {
    struct stat s {};
    int64_t mtime_ns = 0;
    if (!f.path().empty() && ::stat(f.path().c_str(), &s) == 0) {
      mtime_ns = static_cast<int64_t>(s.st_mtim.tv_sec) * 1000000000 + s.st_mtim.tv_nsec;
    }
    const uint64_t size = f.file_size();
    XXH3_64bits_update(st, &size, sizeof size);
    XXH3_64bits_update(st, &mtime_ns, sizeof mtime_ns);
    const size_t header = static_cast<size_t>(std::min<uint64_t>(f.data_offset(), f.file_size()));
    XXH3_64bits_update(st, f.bytes().data(), header);
  }
  XXH3_64bits_update(st, sha256.data(), sha256.size());
  const uint64_t key = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return key;
}

std::string cache_path(const std::string& dir, const std::vector<gguf::GgufFile>& sources,
                       const std::vector<PackTensor>& tensors) {
  std::string stem = std::filesystem::path(sources.front().path()).stem().string();
  if (stem.empty()) stem = "model";
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  const uint32_t version = tensor::kPackLayoutVersion;
  XXH3_64bits_update(st, &version, sizeof version);
  for (const PackTensor& t : tensors) {
    XXH3_64bits_update(st, t.name.data(), t.name.size() + 1);  // with the NUL as separator
    const auto type = static_cast<uint32_t>(t.type);
    XXH3_64bits_update(st, &type, sizeof type);
  }
  const uint64_t set = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(set));
  return (std::filesystem::path(dir) / (stem + "." + hex + ".realm-pack")).string();
}

Expected<PackedMap> map_cache(const std::string& path, uint64_t key,
                              const std::vector<PackTensor>& tensors) {
  uint64_t total = 0;
  auto offsets = layout(tensors, total);
  if (!offsets) return offsets.take_error();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(errno == ENOENT ? "absent" : errno_text(errno));
  struct stat s {};
  if (fstat(fd, &s) != 0 || static_cast<uint64_t>(s.st_size) != total) {
    ::close(fd);
    return make_error("size ", s.st_size, " is not the expected ", total, " bytes");
  }
  // MAP_POPULATE: the checksums read every page anyway; one call maps them all.
  void* addr = mmap(nullptr, total, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (addr == MAP_FAILED) return make_error("mmap: ", errno_text(map_errno));
  PackedMap m{addr, total, {}};
  const auto* base = static_cast<const uint8_t*>(addr);
  Header h;
  std::memcpy(&h, base, sizeof h);
  std::vector<Entry> expect = table_of(tensors, *offsets);
  std::vector<Entry> got(tensors.size());
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0 || h.version != tensor::kPackLayoutVersion ||
      h.n_tensors != tensors.size() || h.file_bytes != total) {
    unmap(m);
    return make_error("not a cache of this layout");
  }
  if (h.source_key != key) {
    unmap(m);
    return make_error("stale: the source file changed");
  }
  std::memcpy(got.data(), base + sizeof h, got.size() * sizeof(Entry));
  if (table_hash(got) != h.table_hash) {
    unmap(m);
    return make_error("corrupt tensor table");
  }
  for (size_t i = 0; i < got.size(); ++i) {
    Entry g = got[i];
    g.hash = 0;
    if (std::memcmp(&g, &expect[i], sizeof(Entry)) != 0) {
      unmap(m);
      return make_error("its tensor table does not match the model");
    }
  }
  std::atomic<size_t> bad{got.size()};
  auto st = parallel_for(got.size(), [&](size_t i) -> Status {
    if (XXH3_64bits(base + got[i].offset, got[i].bytes) != got[i].hash) bad = i;
    return {};
  });
  if (bad != got.size()) {
    unmap(m);
    return make_error("corrupt: checksum of '", tensors[bad].name, "' differs");
  }
  for (const Entry& e : got) m.data.push_back(base + e.offset);
  return m;
}

Expected<PackedMap> write_cache(const std::string& path, uint64_t key,
                                const std::vector<PackTensor>& tensors) {
  uint64_t total = 0;
  auto offsets = layout(tensors, total);
  if (!offsets) return offsets.take_error();
  std::error_code ec;
  const auto dir = std::filesystem::path(path).parent_path();
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error("cannot create ", dir.string(), ": ", ec.message());
  std::random_device rd;
  const std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(rd());
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return make_error("cannot create ", tmp, ": ", errno_text(errno));
  auto fail = [&](std::string why, void* addr = nullptr) -> Expected<PackedMap> {
    if (addr != nullptr) munmap(addr, total);
    ::close(fd);
    ::unlink(tmp.c_str());
    return make_error(why);
  };
  // Reserve the blocks first: writing through a mapping into a full file system would be a
  // SIGBUS, not an error.
  if (const int e = posix_fallocate(fd, 0, static_cast<off_t>(total)); e != 0) {
    return fail(tmp + ": " + errno_text(e));
  }
  void* addr = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) return fail("mmap " + tmp + ": " + errno_text(errno));
  auto* base = static_cast<uint8_t*>(addr);
  std::vector<Entry> table = table_of(tensors, *offsets);
  auto st = parallel_for(tensors.size(), [&](size_t i) -> Status {
    const PackTensor& t = tensors[i];
    REALM_TRY(tensor::pack_rows(t.type, t.src, t.n_rows, t.n_cols, base + table[i].offset));
    drop_source_pages(t);
    table[i].hash = XXH3_64bits(base + table[i].offset, t.bytes);
    return {};
  });
  if (!st) return fail(st.error().message, addr);
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = tensor::kPackLayoutVersion;
  h.n_tensors = static_cast<uint32_t>(tensors.size());
  h.source_key = key;
  h.file_bytes = total;
  h.table_hash = table_hash(table);
  std::memcpy(base, &h, sizeof h);
  std::memcpy(base + sizeof h, table.data(), table.size() * sizeof(Entry));
  if (msync(addr, total, MS_SYNC) != 0 || fsync(fd) != 0) {
    return fail("sync " + tmp + ": " + errno_text(errno), addr);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return fail("rename to " + path + ": " + errno_text(errno), addr);
  }
  ::close(fd);
  if (const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      dfd >= 0) {
    fsync(dfd);
    ::close(dfd);
  }
  mprotect(addr, total, PROT_READ);
  PackedMap m{addr, total, {}};
  for (const Entry& e : table) m.data.push_back(base + e.offset);
  return m;
}

}  // namespace realm::model::detail
