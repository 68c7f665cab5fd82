// Who may call the server: the tenants and keys of the store, held in memory (keys by their HMAC)
// and applied to the sandbox (each tenant's guest module and limits). A thread polls the store and
// reloads within a second of a change made by the CLI or another process; changes made through
// the admin API reload at once. Without a store (`--no-auth`), one tenant, "default", may use
// every model without a key.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/sandbox.h"
#include "server/store.h"

namespace realm::server {

// An authenticated caller.
struct Identity {
  KeyInfo key;
  std::shared_ptr<const TenantConfig> tenant;  // null for an admin key
  std::string guest_error;  // the tenant's guest module cannot be loaded: why (requests fail)
};

struct DirectoryOptions {
  int64_t n_ctx = 4096;  // every session's context
  std::chrono::milliseconds poll{250};
};

class Directory {
 public:
  // `store` null: the keyless default tenant. `default_guest`: the built-in guest's bytes.
  static Expected<std::unique_ptr<Directory>> create(Store* store, sandbox::Sandbox* sandbox,
                                                     std::span<const uint8_t> default_guest,
                                                     DirectoryOptions options);
  ~Directory();

  bool open() const { return store_ == nullptr; }  // no keys needed
  // The caller presenting `key` (revoked, unknown and deleted tenants' keys: nullopt).
  std::optional<Identity> authenticate(std::string_view key) const;
  // The keyless identity (open() only).
  Identity anonymous() const;
  // Re-reads the store now and applies the changes.
  Status reload();
  std::vector<std::string> tenant_ids() const;

 private:
  Directory() = default;
  Status apply(StoreSnapshot snap);
  Expected<std::shared_ptr<const sandbox::WasmModule>> module_for(const std::string& path);
  sandbox::TenantRecord record_of(const TenantConfig& t) const;

  Store* store_ = nullptr;
  sandbox::Sandbox* sandbox_ = nullptr;
  DirectoryOptions options_;
  std::shared_ptr<const sandbox::WasmModule> default_module_;
  mutable std::mutex mu_;
  std::map<std::string, StoreSnapshot::Key> keys_;  // by hash
  std::map<std::string, std::shared_ptr<const TenantConfig>> tenants_;
  std::map<std::string, std::string> guest_errors_;  // tenant -> why its module failed
  struct CachedModule {
    int64_t mtime_ns = 0, size = 0;
    std::shared_ptr<const sandbox::WasmModule> module;
  };
  std::map<std::string, CachedModule> modules_;  // by path
  std::mutex reload_mu_;
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

}  // namespace realm::server
