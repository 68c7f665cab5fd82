// The server's embedded store (SQLite, WAL): tenants, API keys and usage rows, behind one versioned
// schema with migrations (PRAGMA user_version). The CLI (`realm tenants|keys|usage`), the admin
// HTTP API and `realm serve` all go through this class, so there is one implementation of every
// operation.
//
// Keys: `rk-` + 32 random bytes from OpenSSL (hex). Only HMAC-SHA-256(secret, key) is stored; the
// secret lives outside the database, in a file (default: the database path + ".secret", created
// 0600 with 32 random bytes on first use). A key has a public id ("key_" + 12 hex) that logs and
// usage rows carry instead of the key. Admin keys (for /admin/...) are keys without a tenant.
//
// Every method is thread-safe (one connection, one mutex) and reports failures (a locked, corrupt
// or vanished database, a full disk) as errors, never by crashing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/expected.h"

namespace realm::server {

// One tenant record.
struct TenantConfig {
  std::string id;                   // [A-Za-z0-9_.-]{1,64}
  std::vector<std::string> models;  // allowed model names; empty: every model
  std::string guest;                // path of the tenant's guest module (.wasm); "": the default
  int64_t rpm = 0;                  // requests per minute; 0: unlimited
  int64_t tpm = 0;                  // tokens (prompt + completion) per minute; 0: unlimited
  int32_t concurrency = 4;          // requests running at once (more wait in its queue)
  int64_t daily_tokens = 0;         // tokens per UTC day; 0: unlimited
  int64_t memory_mb = 64;           // guest linear memory cap
  double weight = 1.0;              // scheduling weight (> 0)
  int64_t created_at = 0;           // Unix seconds (set by the store)
  int64_t updated_at = 0;
};

struct KeyInfo {
  std::string id;      // "key_" + 12 hex digits
  std::string tenant;  // "" for an admin key
  std::string name;    // the operator's label
  bool admin = false;
  int64_t created_at = 0;
  int64_t revoked_at = 0;  // 0: active
};

// One finished request. Token counts are the host's (what went through decode, what was emitted).
struct UsageRow {
  int64_t ts_ms = 0;  // when it ended, Unix milliseconds
  std::string request_id, tenant, key_id, model, endpoint;
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  double ttft_ms = -1;  // < 0: no token
  double duration_ms = 0;
  int status = 200;           // HTTP status (499: the client went away)
  std::string finish_reason;  // "stop", "length", "cancelled", "error", ...
};

struct UsageSummary {
  std::string tenant, model;
  int64_t requests = 0, errors = 0;  // errors: status >= 400
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};

// Everything the server needs to authenticate and admit, read in one transaction.
struct StoreSnapshot {
  std::vector<TenantConfig> tenants;
  struct Key {
    KeyInfo info;
    std::string hash;  // 32 raw bytes of HMAC-SHA-256
  };
  std::vector<Key> keys;  // active keys only
};

// $REALM_HOME (default ~/.cache/realm) + "/realm.db".
std::string default_db_path();

class Store {
 public:
  // Opens (creating when absent) the database and its secret, sets WAL and a busy timeout, and
  // migrates the schema to the current version. A database of a newer version is refused.
  // `secret_path` "": db_path + ".secret".
  static Expected<std::unique_ptr<Store>> open(const std::string& db_path,
                                               const std::string& secret_path = "");
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  static int schema_version();  // the version this build writes

  // Tenants. create fails when the id exists, update when it does not (ErrorCode::NOT_FOUND);
  // values are validated (ids, weight > 0, limits >= 0, concurrency >= 1, memory_mb 1..4096).
  Status create_tenant(const TenantConfig& t);
  Status update_tenant(const TenantConfig& t);
  Expected<std::optional<TenantConfig>> get_tenant(const std::string& id);
  Expected<std::vector<TenantConfig>> list_tenants();
  // Deletes the tenant and revokes its keys (usage rows stay).
  Status delete_tenant(const std::string& id);

  // Keys. create_key returns the key's info and the key itself (shown once, never stored).
  // `tenant` must exist unless `admin`.
  Expected<std::pair<KeyInfo, std::string>> create_key(const std::string& tenant,
                                                       const std::string& name, bool admin = false);
  // All keys (revoked ones too) of `tenant` ("": every key).
  Expected<std::vector<KeyInfo>> list_keys(const std::string& tenant = "");
  Status revoke_key(const std::string& key_id);  // NOT_FOUND for an unknown id
  // HMAC-SHA-256 of a presented key with the secret (32 raw bytes).
  std::string key_hash(std::string_view key) const;
  // The active key matching `key` (constant-time comparison of the hashes), or nullopt.
  Expected<std::optional<KeyInfo>> authenticate(std::string_view key);

  Expected<StoreSnapshot> snapshot();
  // Changes when another connection (the CLI, another process) commits: poll it to reload.
  Expected<int64_t> data_version();

  // Usage. append_usage writes the rows in one transaction.
  Status append_usage(std::span<const UsageRow> rows);
  // Sums per (tenant, model) of the rows with ts_ms >= since_ms, of `tenant` ("": all), ordered by
  // tenant then model.
  Expected<std::vector<UsageSummary>> usage_summary(const std::string& tenant, int64_t since_ms);
  // Prompt + completion tokens of `tenant` since since_ms (the daily quota's use).
  Expected<int64_t> tokens_since(const std::string& tenant, int64_t since_ms);

  struct Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace realm::server
