// The store over SQLite's C API and OpenSSL's libcrypto. One connection per Store, guarded by one
// mutex; prepared statements are kept for the connection's life and reset after each use.
#include "server/store.h"

#include "util/realm_home.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <utility>

namespace realm::server {

namespace {

// The schema, one step per version: step i takes a database from user_version i to i + 1. A step
// is never edited once released; a change is a new step.
constexpr const char* kMigrations[] = {
    // 1: tenants, keys, usage.
    R"sql(
CREATE TABLE tenants (
  id           TEXT PRIMARY KEY NOT NULL,
  models       TEXT NOT NULL DEFAULT '[]',  -- JSON array of model names; []: every model
  guest        TEXT NOT NULL DEFAULT '',    -- path of the guest module; '': the default
  rpm          INTEGER NOT NULL DEFAULT 0,
  tpm          INTEGER NOT NULL DEFAULT 0,
  concurrency  INTEGER NOT NULL DEFAULT 4,
  daily_tokens INTEGER NOT NULL DEFAULT 0,
  memory_mb    INTEGER NOT NULL DEFAULT 64,
  weight       REAL NOT NULL DEFAULT 1.0,
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL
);
CREATE TABLE keys (
  id         TEXT PRIMARY KEY NOT NULL,
  tenant     TEXT REFERENCES tenants(id) ON DELETE SET NULL,  -- NULL: admin, or tenant deleted
  name       TEXT NOT NULL DEFAULT '',
  admin      INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
  hash       BLOB NOT NULL UNIQUE,  -- HMAC-SHA-256(secret, key); the key itself is never stored
  created_at INTEGER NOT NULL,
  revoked_at INTEGER NOT NULL DEFAULT 0  -- 0: active
);
-- Deleting a tenant revokes its keys (the rows stay), whoever deletes it.
CREATE TRIGGER tenants_delete_revokes_keys BEFORE DELETE ON tenants BEGIN
  UPDATE keys SET revoked_at = CAST(strftime('%s', 'now') AS INTEGER)
   WHERE tenant = OLD.id AND revoked_at = 0;
END;
CREATE TABLE usage (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  ts_ms             INTEGER NOT NULL,
  request_id        TEXT NOT NULL DEFAULT '',
  tenant            TEXT NOT NULL DEFAULT '',
  key_id            TEXT NOT NULL DEFAULT '',
  model             TEXT NOT NULL DEFAULT '',
  endpoint          TEXT NOT NULL DEFAULT '',
  prompt_tokens     INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  cached_tokens     INTEGER NOT NULL DEFAULT 0,
  ttft_ms           REAL,  -- NULL: no token
  duration_ms       REAL NOT NULL DEFAULT 0,
  status            INTEGER NOT NULL DEFAULT 200,
  finish_reason     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX usage_tenant_ts ON usage (tenant, ts_ms);
)sql",
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

constexpr int kBusyTimeoutMs = 5000;
constexpr size_t kMinSecretChars = 32;
constexpr size_t kMaxKeyChars = 256;  // longer presented keys are refused without hashing
constexpr size_t kMaxModelName = 256;
constexpr size_t kMaxGuestPath = 4096;
constexpr size_t kMaxKeyName = 256;

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string to_hex(const unsigned char* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

Expected<std::string> random_hex(size_t n_bytes) {
  std::vector<unsigned char> buf(n_bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) {
    return make_error(ErrorCode::INTERNAL, "OpenSSL RAND_bytes failed");
  }
  return to_hex(buf.data(), buf.size());
}

// "'abc'" with control characters shown as '?', for messages about values.
std::string quote_value(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 80)) out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
  return out + (s.size() > 80 ? "...'" : "'");
}

bool valid_tenant_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool has_control(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

Status validate_tenant(const TenantConfig& t) {
  if (!valid_tenant_id(t.id)) {
    return make_error("tenant id ", quote_value(t.id),
                      " is invalid: want 1 to 64 characters of A-Z a-z 0-9 _ . -");
  }
  for (const std::string& m : t.models) {
    if (m.empty() || m.size() > kMaxModelName || has_control(m)) {
      return make_error("models: model name ", quote_value(m), " is invalid: want 1 to ",
                        kMaxModelName, " printable characters");
    }
  }
  if (t.guest.size() > kMaxGuestPath || has_control(t.guest)) {
    return make_error("guest: path ", quote_value(t.guest), " is invalid");
  }
  if (t.rpm < 0) return make_error("rpm must be >= 0 (0: unlimited), got ", t.rpm);
  if (t.tpm < 0) return make_error("tpm must be >= 0 (0: unlimited), got ", t.tpm);
  if (t.daily_tokens < 0) {
    return make_error("daily_tokens must be >= 0 (0: unlimited), got ", t.daily_tokens);
  }
  if (t.concurrency < 1) return make_error("concurrency must be >= 1, got ", t.concurrency);
  if (t.memory_mb < 1 || t.memory_mb > 4096) {
    return make_error("memory_mb must be in 1..4096, got ", t.memory_mb);
  }
  if (!std::isfinite(t.weight) || !(t.weight > 0)) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, t.weight);
    return make_error("weight must be a finite number > 0, got ", std::string_view(buf, r.ptr));
  }
  return {};
}

Expected<std::string> models_to_json(const std::vector<std::string>& models) {
  try {
    return nlohmann::json(models).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::INTERNAL, "models: cannot encode as JSON: ", e.what());
  }
}

Expected<std::vector<std::string>> models_from_json(std::string_view text, const std::string& id) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&] {
    return make_error(ErrorCode::INTERNAL, "tenant ", quote_value(id),
                      ": column models is not a JSON array of strings: ", quote_value(text));
  };
  if (!j.is_array()) return bad();
  std::vector<std::string> out;
  for (const auto& m : j) {
    if (!m.is_string()) return bad();
    out.push_back(m.get<std::string>());
  }
  return out;
}

// `mkdir -p` of the folder holding `file`.
Status make_parent_dirs(const std::string& file, const char* what) {
  std::filesystem::path parent = std::filesystem::path(file).parent_path();
  if (parent.empty()) return {};
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) {
    return make_error(ErrorCode::UNAVAILABLE, "cannot create the folder of the ", what, " ",
                      parent.string(), ": ", ec.message());
  }
  return {};
}

// Reads the secret at `path`, creating it (0600, 64 hex digits of RAND_bytes(32)) when absent. A
// new file is written under a temporary name and linked into place, so that two processes opening
// a new database at once agree on one secret and never read a half-written one.
Expected<std::string> load_or_create_secret(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return make_error(ErrorCode::UNAVAILABLE, "secret file ", path, ": ", std::strerror(errno));
    }
    REALM_TRY(make_parent_dirs(path, "secret file"));
    auto hex = random_hex(32);
    if (!hex) return hex.take_error();
    auto suffix = random_hex(6);
    if (!suffix) return suffix.take_error();
    const std::string tmp = path + ".tmp-" + *suffix;
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      return make_error(ErrorCode::UNAVAILABLE, "cannot create secret file ", tmp, ": ",
                        std::strerror(errno));
    }
    const std::string text = *hex + "\n";
    const bool written =
        ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
        ::fsync(fd) == 0;
    const int write_errno = errno;
    ::close(fd);
    if (!written) {
      ::unlink(tmp.c_str());
      return make_error(ErrorCode::UNAVAILABLE, "cannot write secret file ", tmp, ": ",
                        std::strerror(write_errno));
    }
    // link() never replaces: when another process won the race, its secret is kept.
    const int linked = ::link(tmp.c_str(), path.c_str());
    const int link_errno = errno;
    ::unlink(tmp.c_str());
    if (linked != 0 && link_errno != EEXIST) {
      return make_error(ErrorCode::UNAVAILABLE, "cannot create secret file ", path, ": ",
                        std::strerror(link_errno));
    }
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return make_error(ErrorCode::UNAVAILABLE, "cannot read secret file ", path, ": ",
                      std::strerror(errno));
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      const int read_errno = errno;
      ::close(fd);
      return make_error(ErrorCode::UNAVAILABLE, "cannot read secret file ", path, ": ",
                        std::strerror(read_errno));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (1u << 16)) break;
  }
  ::close(fd);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  if (text.size() < kMinSecretChars) {
    return make_error(ErrorCode::INVALID_ARGUMENT, "secret file ", path, " holds ", text.size(),
                      " characters; want at least ", kMinSecretChars,
                      " (restore the right file; a new one is made only while no key is active)");
  }
  return text;
}

ErrorCode sqlite_error_code(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
      return ErrorCode::UNAVAILABLE;
    default:
      return ErrorCode::INTERNAL;
  }
}

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

}  // namespace

std::string default_db_path() {
  return realm_home() + "/realm.db";
}

struct Store::Impl {
  std::string path;
  std::string secret;
  sqlite3* db = nullptr;
  std::mutex mu;
  // Prepared statements by their SQL text (string literals, so the pointer is the key).
  std::unordered_map<const char*, sqlite3_stmt*> stmts;

  ~Impl() {
    for (auto& [sql, s] : stmts) sqlite3_finalize(s);
    if (db) sqlite3_close_v2(db);
  }

  Error error(int rc, std::string_view what) const {
    const char* msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    return make_error(sqlite_error_code(rc), "store ", path, ": ", what, ": ", msg);
  }

  // A prepared statement, reset (and its bindings cleared) when the handle goes.
  class Stmt {
   public:
    Stmt(Impl* impl, sqlite3_stmt* s) : impl_(impl), s_(s) {}
    Stmt(Stmt&& o) noexcept : impl_(o.impl_), s_(std::exchange(o.s_, nullptr)) {}
    Stmt(const Stmt&) = delete;
    ~Stmt() {
      if (s_) {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
      }
    }
    sqlite3_stmt* get() const { return s_; }
    void bind(int i, std::string_view v) {
      sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    }
    void bind_blob(int i, std::string_view v) {
      sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    }
    void bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
    void bind(int i, double v) { sqlite3_bind_double(s_, i, v); }
    void bind_null(int i) { sqlite3_bind_null(s_, i); }
    // SQLITE_ROW: true; SQLITE_DONE: false; anything else: an Error.
    Expected<bool> step(std::string_view what) {
      const int rc = sqlite3_step(s_);
      if (rc == SQLITE_ROW) return true;
      if (rc == SQLITE_DONE) return false;
      return impl_->error(rc, what);
    }
    // Runs a statement that returns no rows.
    Status run(std::string_view what) {
      auto r = step(what);
      if (!r) return r.take_error();
      return {};
    }
    int last_rc() const { return sqlite3_extended_errcode(impl_->db); }

   private:
    Impl* impl_;
    sqlite3_stmt* s_;
  };

  Expected<Stmt> prepare(const char* sql) {
    auto it = stmts.find(sql);
    if (it != stmts.end()) return Stmt(this, it->second);
    sqlite3_stmt* s = nullptr;
    const int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(s);
      return error(rc, "prepare");
    }
    stmts.emplace(sql, s);
    return Stmt(this, s);
  }

  // Runs SQL without parameters (schema steps, transaction control).
  Status exec(const char* sql, std::string_view what) {
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return error(rc, what);
    return {};
  }

  Expected<int64_t> pragma_int(const char* sql) {
    auto s = prepare(sql);
    if (!s) return s.take_error();
    auto row = s->step(sql);
    if (!row) return row.take_error();
    if (!*row) return make_error(ErrorCode::INTERNAL, "store ", path, ": ", sql, ": no row");
    return static_cast<int64_t>(sqlite3_column_int64(s->get(), 0));
  }

  // BEGIN ... COMMIT; rolled back unless committed.
  class Txn {
   public:
    explicit Txn(Impl* impl) : impl_(impl) {}
    Txn(const Txn&) = delete;
    ~Txn() {
      if (open_) sqlite3_exec(impl_->db, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    // IMMEDIATE takes the write lock now (waiting up to the busy timeout), so that a transaction
    // that writes never fails half-way on another writer.
    Status begin(bool write) {
      REALM_TRY(impl_->exec(write ? "BEGIN IMMEDIATE" : "BEGIN", "begin transaction"));
      open_ = true;
      return {};
    }
    Status commit() {
      REALM_TRY(impl_->exec("COMMIT", "commit"));
      open_ = false;
      return {};
    }

   private:
    Impl* impl_;
    bool open_ = false;
  };

  Status migrate() {
    auto v = pragma_int("PRAGMA user_version");
    if (!v) return v.take_error();
    if (*v > kSchemaVersion) return newer_error(*v);
    if (*v == kSchemaVersion) return {};
    Txn txn(this);
    REALM_TRY(txn.begin(true));
    // Read again under the write lock: another process may have migrated meanwhile.
    v = pragma_int("PRAGMA user_version");
    if (!v) return v.take_error();
    if (*v > kSchemaVersion) return newer_error(*v);
    for (int64_t step = *v; step < kSchemaVersion; ++step) {
      REALM_TRY(exec(kMigrations[step], "migrate the schema"));
    }
    // PRAGMA takes no parameters; the version is this build's constant, not a value from outside.
    const std::string set_version = "PRAGMA user_version = " + std::to_string(kSchemaVersion);
    REALM_TRY(exec(set_version.c_str(), "set the schema version"));
    return txn.commit();
  }

  Error newer_error(int64_t v) const {
    return make_error(ErrorCode::FAILED_PRECONDITION, "store ", path, ": schema version ", v,
                      " is newer than this build's ", kSchemaVersion,
                      "; upgrade realm to open this database");
  }

  Expected<TenantConfig> read_tenant(sqlite3_stmt* s) {
    TenantConfig t;
    t.id = column_text(s, 0);
    auto models = models_from_json(column_text(s, 1), t.id);
    if (!models) return models.take_error();
    t.models = std::move(*models);
    t.guest = column_text(s, 2);
    t.rpm = sqlite3_column_int64(s, 3);
    t.tpm = sqlite3_column_int64(s, 4);
    t.concurrency = static_cast<int32_t>(sqlite3_column_int64(s, 5));
    t.daily_tokens = sqlite3_column_int64(s, 6);
    t.memory_mb = sqlite3_column_int64(s, 7);
    t.weight = sqlite3_column_double(s, 8);
    t.created_at = sqlite3_column_int64(s, 9);
    t.updated_at = sqlite3_column_int64(s, 10);
    return t;
  }

  static KeyInfo read_key(sqlite3_stmt* s) {
    KeyInfo k;
    k.id = column_text(s, 0);
    k.tenant = column_text(s, 1);
    k.name = column_text(s, 2);
    k.admin = sqlite3_column_int64(s, 3) != 0;
    k.created_at = sqlite3_column_int64(s, 4);
    k.revoked_at = sqlite3_column_int64(s, 5);
    return k;
  }

  Expected<std::vector<TenantConfig>> list_tenants_locked() {
    auto s = prepare(
        "SELECT id, models, guest, rpm, tpm, concurrency, daily_tokens, memory_mb, weight, "
        "created_at, updated_at FROM tenants ORDER BY id");
    if (!s) return s.take_error();
    std::vector<TenantConfig> out;
    for (;;) {
      auto row = s->step("list tenants");
      if (!row) return row.take_error();
      if (!*row) break;
      auto t = read_tenant(s->get());
      if (!t) return t.take_error();
      out.push_back(std::move(*t));
    }
    return out;
  }

  Expected<bool> tenant_exists(const std::string& id) {
    auto s = prepare("SELECT 1 FROM tenants WHERE id = ?1");
    if (!s) return s.take_error();
    s->bind(1, id);
    return s->step("look up tenant");
  }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

int Store::schema_version() {
  return kSchemaVersion;
}

Expected<std::unique_ptr<Store>> Store::open(const std::string& db_path,
                                             const std::string& secret_path) {
  try {
    if (db_path.empty()) return make_error("store: empty database path");
    auto impl = std::make_unique<Impl>();
    impl->path = db_path;
    REALM_TRY(make_parent_dirs(db_path, "database"));
    const int rc = sqlite3_open_v2(db_path.c_str(), &impl->db,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    if (rc != SQLITE_OK) return impl->error(rc, "open");
    sqlite3_extended_result_codes(impl->db, 1);
    // Other writers (the CLI while a server runs) hold the lock briefly: wait rather than fail.
    sqlite3_busy_timeout(impl->db, kBusyTimeoutMs);
    // Reading the schema first makes a file that is not a database fail here, with its message.
    REALM_TRY(impl->exec("SELECT count(*) FROM sqlite_schema", "read the schema"));
    {
      auto mode = impl->prepare("PRAGMA journal_mode = WAL");
      if (!mode) return mode.take_error();
      auto row = mode->step("set WAL journal mode");
      if (!row) return row.take_error();
      const std::string got = *row ? column_text(mode->get(), 0) : "";
      if (got != "wal") {
        return make_error(ErrorCode::UNAVAILABLE, "store ", db_path,
                          ": cannot use WAL journal mode (got '", got, "')");
      }
    }
    REALM_TRY(impl->exec("PRAGMA foreign_keys = ON", "enable foreign keys"));
    REALM_TRY(impl->migrate());
    const std::string secret_file = secret_path.empty() ? db_path + ".secret" : secret_path;
    // A new secret for a database with active keys would make every one of them fail to
    // authenticate, silently: refuse instead, and say how to recover.
    if (struct stat st; ::stat(secret_file.c_str(), &st) != 0 && errno == ENOENT) {
      auto active = impl->pragma_int("SELECT count(*) FROM keys WHERE revoked_at = 0");
      if (!active) return active.take_error();
      if (*active > 0) {
        return make_error(ErrorCode::FAILED_PRECONDITION, "the key secret ", secret_file,
                          " is missing but ", db_path, " holds ", *active, " active key",
                          *active == 1 ? "" : "s",
                          ": restore the secret file (keys cannot be checked without it), or "
                          "revoke the keys (sqlite3 ",
                          db_path,
                          " \"UPDATE keys SET revoked_at = strftime('%s') WHERE revoked_at = "
                          "0\"), then create new ones");
      }
    }
    auto secret = load_or_create_secret(secret_file);
    if (!secret) return secret.take_error();
    impl->secret = std::move(*secret);
    return std::unique_ptr<Store>(new Store(std::move(impl)));
  } catch (const std::exception& e) {
    return make_error(ErrorCode::INTERNAL, "store ", db_path, ": ", e.what());
  }
}

Status Store::create_tenant(const TenantConfig& t) {
  REALM_TRY(validate_tenant(t));
  auto models = models_to_json(t.models);
  if (!models) return models.take_error();
  std::lock_guard lock(impl_->mu);
  auto s = impl_->prepare(
      "INSERT INTO tenants (id, models, guest, rpm, tpm, concurrency, daily_tokens, memory_mb, "
      "weight, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)");
  if (!s) return s.take_error();
  s->bind(1, t.id);
  s->bind(2, *models);
  s->bind(3, t.guest);
  s->bind(4, t.rpm);
  s->bind(5, t.tpm);
  s->bind(6, int64_t{t.concurrency});
  s->bind(7, t.daily_tokens);
  s->bind(8, t.memory_mb);
  s->bind(9, t.weight);
  s->bind(10, now_s());
  auto r = s->step("create tenant");
  if (!r) {
    if (s->last_rc() == SQLITE_CONSTRAINT_PRIMARYKEY) {
      return make_error(ErrorCode::FAILED_PRECONDITION, "tenant ", quote_value(t.id),
                        " already exists");
    }
    return r.take_error();
  }
  return {};
}

Status Store::update_tenant(const TenantConfig& t) {
  REALM_TRY(validate_tenant(t));
  auto models = models_to_json(t.models);
  if (!models) return models.take_error();
  std::lock_guard lock(impl_->mu);
  auto s = impl_->prepare(
      "UPDATE tenants SET models = ?2, guest = ?3, rpm = ?4, tpm = ?5, concurrency = ?6, "
      "daily_tokens = ?7, memory_mb = ?8, weight = ?9, updated_at = ?10 WHERE id = ?1");
  if (!s) return s.take_error();
  s->bind(1, t.id);
  s->bind(2, *models);
  s->bind(3, t.guest);
  s->bind(4, t.rpm);
  s->bind(5, t.tpm);
  s->bind(6, int64_t{t.concurrency});
  s->bind(7, t.daily_tokens);
  s->bind(8, t.memory_mb);
  s->bind(9, t.weight);
  s->bind(10, now_s());
  REALM_TRY(s->run("update tenant"));
  if (sqlite3_changes(impl_->db) == 0) {
    return make_error(ErrorCode::NOT_FOUND, "no tenant ", quote_value(t.id));
  }
  return {};
}

Expected<std::optional<TenantConfig>> Store::get_tenant(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  auto s = impl_->prepare(
      "SELECT id, models, guest, rpm, tpm, concurrency, daily_tokens, memory_mb, weight, "
      "created_at, updated_at FROM tenants WHERE id = ?1");
  if (!s) return s.take_error();
  s->bind(1, id);
  auto row = s->step("get tenant");
  if (!row) return row.take_error();
  if (!*row) return std::optional<TenantConfig>();
  auto t = impl_->read_tenant(s->get());
  if (!t) return t.take_error();
  return std::optional<TenantConfig>(std::move(*t));
}

Expected<std::vector<TenantConfig>> Store::list_tenants() {
  std::lock_guard lock(impl_->mu);
  return impl_->list_tenants_locked();
}

Status Store::delete_tenant(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  // The trigger tenants_delete_revokes_keys revokes the tenant's keys in the same statement.
  auto s = impl_->prepare("DELETE FROM tenants WHERE id = ?1");
  if (!s) return s.take_error();
  s->bind(1, id);
  REALM_TRY(s->run("delete tenant"));
  if (sqlite3_changes(impl_->db) == 0) {
    return make_error(ErrorCode::NOT_FOUND, "no tenant ", quote_value(id));
  }
  return {};
}

Expected<std::pair<KeyInfo, std::string>> Store::create_key(const std::string& tenant,
                                                            const std::string& name, bool admin) {
  if (admin && !tenant.empty()) {
    return make_error("an admin key has no tenant (got tenant ", quote_value(tenant), ")");
  }
  if (!admin && tenant.empty()) return make_error("a key needs a tenant (or admin)");
  if (name.size() > kMaxKeyName || has_control(name)) {
    return make_error("key name ", quote_value(name), " is invalid: want at most ", kMaxKeyName,
                      " printable characters");
  }
  std::lock_guard lock(impl_->mu);
  if (!admin) {
    auto exists = impl_->tenant_exists(tenant);
    if (!exists) return exists.take_error();
    if (!*exists) return make_error(ErrorCode::NOT_FOUND, "no tenant ", quote_value(tenant));
  }
  // A clash of 48-bit ids (or 256-bit keys) is unlikely; retry a few times anyway.
  for (int attempt = 0; attempt < 4; ++attempt) {
    auto secret_part = random_hex(32);
    if (!secret_part) return secret_part.take_error();
    auto id_part = random_hex(6);
    if (!id_part) return id_part.take_error();
    KeyInfo info;
    info.id = "key_" + *id_part;
    info.tenant = admin ? "" : tenant;
    info.name = name;
    info.admin = admin;
    info.created_at = now_s();
    std::string key = "rk-" + *secret_part;
    const std::string hash = key_hash(key);
    if (hash.size() != 32) return make_error(ErrorCode::INTERNAL, "HMAC-SHA-256 failed");
    auto s = impl_->prepare(
        "INSERT INTO keys (id, tenant, name, admin, hash, created_at, revoked_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)");
    if (!s) return s.take_error();
    s->bind(1, info.id);
    if (admin) {
      s->bind_null(2);
    } else {
      s->bind(2, tenant);
    }
    s->bind(3, name);
    s->bind(4, int64_t{admin ? 1 : 0});
    s->bind_blob(5, hash);
    s->bind(6, info.created_at);
    auto r = s->step("create key");
    if (r) return std::make_pair(std::move(info), std::move(key));
    const int rc = s->last_rc();
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
      return make_error(ErrorCode::NOT_FOUND, "no tenant ", quote_value(tenant));
    }
    if (rc != SQLITE_CONSTRAINT_PRIMARYKEY && rc != SQLITE_CONSTRAINT_UNIQUE) {
      return r.take_error();
    }
  }
  return make_error(ErrorCode::INTERNAL, "create key: could not draw a unique id");
}

Expected<std::vector<KeyInfo>> Store::list_keys(const std::string& tenant) {
  std::lock_guard lock(impl_->mu);
  auto s = tenant.empty() ? impl_->prepare(
                                "SELECT id, tenant, name, admin, created_at, revoked_at FROM keys "
                                "ORDER BY created_at, id")
                          : impl_->prepare(
                                "SELECT id, tenant, name, admin, created_at, revoked_at FROM keys "
                                "WHERE tenant = ?1 ORDER BY created_at, id");
  if (!s) return s.take_error();
  if (!tenant.empty()) s->bind(1, tenant);
  std::vector<KeyInfo> out;
  for (;;) {
    auto row = s->step("list keys");
    if (!row) return row.take_error();
    if (!*row) break;
    out.push_back(Impl::read_key(s->get()));
  }
  return out;
}

Status Store::revoke_key(const std::string& key_id) {
  std::lock_guard lock(impl_->mu);
  // An already revoked key keeps its first revocation time.
  auto s = impl_->prepare(
      "UPDATE keys SET revoked_at = CASE WHEN revoked_at = 0 THEN ?2 ELSE revoked_at END "
      "WHERE id = ?1");
  if (!s) return s.take_error();
  s->bind(1, key_id);
  s->bind(2, now_s());
  REALM_TRY(s->run("revoke key"));
  if (sqlite3_changes(impl_->db) == 0) {
    return make_error(ErrorCode::NOT_FOUND, "no key ", quote_value(key_id));
  }
  return {};
}

std::string Store::key_hash(std::string_view key) const {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(EVP_sha256(), impl_->secret.data(), static_cast<int>(impl_->secret.size()),
            reinterpret_cast<const unsigned char*>(key.data()), key.size(), out, &n)) {
    return "";
  }
  return std::string(reinterpret_cast<const char*>(out), n);
}

Expected<std::optional<KeyInfo>> Store::authenticate(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyChars) return std::optional<KeyInfo>();
  const std::string hash = key_hash(key);
  if (hash.size() != 32) return make_error(ErrorCode::INTERNAL, "HMAC-SHA-256 failed");
  std::lock_guard lock(impl_->mu);
  // A key authenticates while active and, unless admin, while its tenant exists (the EXISTS also
  // covers a tenant deleted by a connection without foreign keys).
  auto s = impl_->prepare(
      "SELECT k.id, k.tenant, k.name, k.admin, k.created_at, k.revoked_at, k.hash FROM keys k "
      "WHERE k.hash = ?1 AND k.revoked_at = 0 AND "
      "(k.admin = 1 OR EXISTS (SELECT 1 FROM tenants t WHERE t.id = k.tenant))");
  if (!s) return s.take_error();
  s->bind_blob(1, hash);
  auto row = s->step("authenticate");
  if (!row) return row.take_error();
  if (!*row) return std::optional<KeyInfo>();
  const void* stored = sqlite3_column_blob(s->get(), 6);
  const int stored_n = sqlite3_column_bytes(s->get(), 6);
  if (!stored || stored_n != 32 || CRYPTO_memcmp(stored, hash.data(), 32) != 0) {
    return std::optional<KeyInfo>();
  }
  return std::optional<KeyInfo>(Impl::read_key(s->get()));
}

Expected<StoreSnapshot> Store::snapshot() {
  std::lock_guard lock(impl_->mu);
  Impl::Txn txn(impl_.get());
  REALM_TRY(txn.begin(false));
  StoreSnapshot snap;
  auto tenants = impl_->list_tenants_locked();
  if (!tenants) return tenants.take_error();
  snap.tenants = std::move(*tenants);
  auto s = impl_->prepare(
      "SELECT k.id, k.tenant, k.name, k.admin, k.created_at, k.revoked_at, k.hash FROM keys k "
      "WHERE k.revoked_at = 0 AND "
      "(k.admin = 1 OR EXISTS (SELECT 1 FROM tenants t WHERE t.id = k.tenant)) "
      "ORDER BY k.created_at, k.id");
  if (!s) return s.take_error();
  for (;;) {
    auto row = s->step("snapshot keys");
    if (!row) return row.take_error();
    if (!*row) break;
    StoreSnapshot::Key k;
    k.info = Impl::read_key(s->get());
    const auto* blob = static_cast<const char*>(sqlite3_column_blob(s->get(), 6));
    k.hash.assign(blob ? blob : "", static_cast<size_t>(sqlite3_column_bytes(s->get(), 6)));
    snap.keys.push_back(std::move(k));
  }
  REALM_TRY(txn.commit());
  return snap;
}

Expected<int64_t> Store::data_version() {
  std::lock_guard lock(impl_->mu);
  return impl_->pragma_int("PRAGMA data_version");
}

Status Store::append_usage(std::span<const UsageRow> rows) {
  if (rows.empty()) return {};
  std::lock_guard lock(impl_->mu);
  Impl::Txn txn(impl_.get());
  REALM_TRY(txn.begin(true));
  for (const UsageRow& u : rows) {
    auto s = impl_->prepare(
        "INSERT INTO usage (ts_ms, request_id, tenant, key_id, model, endpoint, prompt_tokens, "
        "completion_tokens, cached_tokens, ttft_ms, duration_ms, status, finish_reason) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)");
    if (!s) return s.take_error();
    s->bind(1, u.ts_ms);
    s->bind(2, u.request_id);
    s->bind(3, u.tenant);
    s->bind(4, u.key_id);
    s->bind(5, u.model);
    s->bind(6, u.endpoint);
    s->bind(7, u.prompt_tokens);
    s->bind(8, u.completion_tokens);
    s->bind(9, u.cached_tokens);
    if (u.ttft_ms < 0 || !std::isfinite(u.ttft_ms)) {
      s->bind_null(10);
    } else {
      s->bind(10, u.ttft_ms);
    }
    s->bind(11, std::isfinite(u.duration_ms) ? u.duration_ms : 0.0);
    s->bind(12, int64_t{u.status});
    s->bind(13, u.finish_reason);
    REALM_TRY(s->run("append usage"));
  }
  return txn.commit();
}

Expected<std::vector<UsageSummary>> Store::usage_summary(const std::string& tenant,
                                                         int64_t since_ms) {
  std::lock_guard lock(impl_->mu);
  auto s = tenant.empty()
               ? impl_->prepare(
                     "SELECT tenant, model, count(*), sum(status >= 400), sum(prompt_tokens), "
                     "sum(completion_tokens), sum(cached_tokens) FROM usage "
                     "WHERE ts_ms >= ?1 GROUP BY tenant, model ORDER BY tenant, model")
               : impl_->prepare(
                     "SELECT tenant, model, count(*), sum(status >= 400), sum(prompt_tokens), "
                     "sum(completion_tokens), sum(cached_tokens) FROM usage "
                     "WHERE tenant = ?2 AND ts_ms >= ?1 GROUP BY tenant, model "
                     "ORDER BY tenant, model");
  if (!s) return s.take_error();
  s->bind(1, since_ms);
  if (!tenant.empty()) s->bind(2, tenant);
  std::vector<UsageSummary> out;
  for (;;) {
    auto row = s->step("usage summary");
    if (!row) return row.take_error();
    if (!*row) break;
    UsageSummary u;
    u.tenant = column_text(s->get(), 0);
    u.model = column_text(s->get(), 1);
    u.requests = sqlite3_column_int64(s->get(), 2);
    u.errors = sqlite3_column_int64(s->get(), 3);
    u.prompt_tokens = sqlite3_column_int64(s->get(), 4);
    u.completion_tokens = sqlite3_column_int64(s->get(), 5);
    u.cached_tokens = sqlite3_column_int64(s->get(), 6);
    out.push_back(std::move(u));
  }
  return out;
}

Expected<int64_t> Store::tokens_since(const std::string& tenant, int64_t since_ms) {
  std::lock_guard lock(impl_->mu);
  auto s = impl_->prepare(
      "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM usage "
      "WHERE tenant = ?1 AND ts_ms >= ?2");
  if (!s) return s.take_error();
  s->bind(1, tenant);
  s->bind(2, since_ms);
  auto row = s->step("tokens since");
  if (!row) return row.take_error();
  return row.value() ? static_cast<int64_t>(sqlite3_column_int64(s->get(), 0)) : int64_t{0};
}

}  // namespace realm::server
