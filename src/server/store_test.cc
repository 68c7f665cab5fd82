// The store against real SQLite files: tenants, keys, usage, the secret file, migrations, two
// connections at once, and broken files giving errors instead of crashes; and the admin API's JSON
// forms and --since parser (server/admin.h), which the CLI shares.
#include "server/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "server/admin.h"

namespace realm::server {
namespace {

namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards.
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/store_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    db_ = dir_ + "/realm.db";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<Store> open_store(const std::string& db = "", const std::string& secret = "") {
    auto s = Store::open(db.empty() ? db_ : db, secret);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    return s.ok() ? std::move(s).value() : nullptr;
  }

  static std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  // Runs SQL on the database through a plain connection of its own.
  void exec_sql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }

  std::string dir_, db_;
};

TenantConfig tenant(const std::string& id) {
  TenantConfig t;
  t.id = id;
  return t;
}

TEST_F(StoreTest, TenantsCreateGetUpdateListDelete) {
  auto store = open_store();
  ASSERT_TRUE(store);
  TenantConfig t = tenant("acme");
  t.models = {"llama", "qwen"};
  t.guest = "/srv/guests/acme.wasm";
  t.rpm = 60;
  t.tpm = 10000;
  t.concurrency = 2;
  t.daily_tokens = 1000000;
  t.memory_mb = 128;
  t.weight = 2.5;
  ASSERT_TRUE(store->create_tenant(t).ok());
  ASSERT_TRUE(store->create_tenant(tenant("beta")).ok());

  auto got = store->get_tenant("acme");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  const TenantConfig& g = **got;
  EXPECT_EQ(g.models, (std::vector<std::string>{"llama", "qwen"}));
  EXPECT_EQ(g.guest, "/srv/guests/acme.wasm");
  EXPECT_EQ(g.rpm, 60);
  EXPECT_EQ(g.tpm, 10000);
  EXPECT_EQ(g.concurrency, 2);
  EXPECT_EQ(g.daily_tokens, 1000000);
  EXPECT_EQ(g.memory_mb, 128);
  EXPECT_DOUBLE_EQ(g.weight, 2.5);
  EXPECT_GT(g.created_at, 1600000000);
  EXPECT_EQ(g.updated_at, g.created_at);

  auto missing = store->get_tenant("nobody");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());

  TenantConfig u = g;
  u.models.clear();
  u.rpm = 0;
  u.weight = 0.5;
  ASSERT_TRUE(store->update_tenant(u).ok());
  got = store->get_tenant("acme");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_TRUE((*got)->models.empty());
  EXPECT_EQ((*got)->rpm, 0);
  EXPECT_DOUBLE_EQ((*got)->weight, 0.5);
  EXPECT_EQ((*got)->created_at, g.created_at);

  auto list = store->list_tenants();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "acme");
  EXPECT_EQ((*list)[1].id, "beta");

  ASSERT_TRUE(store->delete_tenant("beta").ok());
  list = store->list_tenants();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);

  auto st = store->delete_tenant("beta");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::NOT_FOUND);
  st = store->update_tenant(tenant("ghost"));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::NOT_FOUND);
  EXPECT_NE(st.error().message.find("ghost"), std::string::npos);
}

TEST_F(StoreTest, FileIsWalWithTheCurrentSchemaVersion) {
  ASSERT_TRUE(open_store());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &db), SQLITE_OK);
  auto pragma = [&](const char* sql) {
    sqlite3_stmt* s = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    return out;
  };
  EXPECT_EQ(pragma("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(pragma("PRAGMA user_version"), std::to_string(Store::schema_version()));
  sqlite3_close(db);
}

TEST_F(StoreTest, DuplicateCreateFails) {
  auto store = open_store();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_tenant(tenant("acme")).ok());
  auto st = store->create_tenant(tenant("acme"));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error().message.find("already exists"), std::string::npos) << st.error().message;
}

TEST_F(StoreTest, ValidationNamesTheFieldAndValue) {
  auto store = open_store();
  ASSERT_TRUE(store);
  struct Case {
    TenantConfig t;
    std::string needle;
  };
  std::vector<Case> cases;
  auto add = [&](auto edit, std::string needle) {
    TenantConfig t = tenant("ok");
    edit(t);
    cases.push_back({t, needle});
  };
  add([](TenantConfig& t) { t.id = ""; }, "tenant id ''");
  add([](TenantConfig& t) { t.id = "has space"; }, "tenant id 'has space'");
  add([](TenantConfig& t) { t.id = std::string(65, 'a'); }, "tenant id");
  add([](TenantConfig& t) { t.weight = 0; }, "weight must be a finite number > 0, got 0");
  add([](TenantConfig& t) { t.weight = -1.5; }, "weight must be a finite number > 0, got -1.5");
  add([](TenantConfig& t) { t.weight = std::nan(""); }, "weight");
  add([](TenantConfig& t) { t.rpm = -1; }, "rpm must be >= 0 (0: unlimited), got -1");
  add([](TenantConfig& t) { t.tpm = -5; }, "tpm must be >= 0 (0: unlimited), got -5");
  add([](TenantConfig& t) { t.daily_tokens = -2; }, "daily_tokens must be >= 0");
  add([](TenantConfig& t) { t.concurrency = 0; }, "concurrency must be >= 1, got 0");
  add([](TenantConfig& t) { t.memory_mb = 0; }, "memory_mb must be in 1..4096, got 0");
  add([](TenantConfig& t) { t.memory_mb = 4097; }, "memory_mb must be in 1..4096, got 4097");
  add([](TenantConfig& t) { t.models = {"a", ""}; }, "models: model name ''");
  for (const Case& c : cases) {
    auto st = store->create_tenant(c.t);
    ASSERT_FALSE(st.ok()) << c.needle;
    EXPECT_EQ(st.error().code, ErrorCode::INVALID_ARGUMENT) << c.needle;
    EXPECT_NE(st.error().message.find(c.needle), std::string::npos)
        << "want '" << c.needle << "' in: " << st.error().message;
  }
  // Nothing invalid was written; update validates too.
  ASSERT_TRUE(store->create_tenant(tenant("ok")).ok());
  TenantConfig bad = tenant("ok");
  bad.concurrency = -3;
  auto st = store->update_tenant(bad);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error().message.find("-3"), std::string::npos);
}

TEST_F(StoreTest, KeysAuthenticateToTheirTenant) {
  auto store = open_store();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_tenant(tenant("acme")).ok());
  ASSERT_TRUE(store->create_tenant(tenant("beta")).ok());
  auto a = store->create_key("acme", "ci");
  ASSERT_TRUE(a.ok()) << a.error().message;
  auto b = store->create_key("beta", "");
  ASSERT_TRUE(b.ok());
  auto admin = store->create_key("", "ops", /*admin=*/true);
  ASSERT_TRUE(admin.ok()) << admin.error().message;

  const auto& [info, key] = *a;
  ASSERT_EQ(key.size(), 3u + 64u);
  EXPECT_EQ(key.substr(0, 3), "rk-");
  EXPECT_EQ(key.find_first_not_of("0123456789abcdef", 3), std::string::npos);
  ASSERT_EQ(info.id.size(), 4u + 12u);
  EXPECT_EQ(info.id.substr(0, 4), "key_");
  EXPECT_EQ(info.tenant, "acme");
  EXPECT_EQ(info.name, "ci");
  EXPECT_FALSE(info.admin);
  EXPECT_NE(key, b->second);

  auto who = store->authenticate(key);
  ASSERT_TRUE(who.ok());
  ASSERT_TRUE(who->has_value());
  EXPECT_EQ((*who)->id, info.id);
  EXPECT_EQ((*who)->tenant, "acme");
  who = store->authenticate(b->second);
  ASSERT_TRUE(who.ok() && who->has_value());
  EXPECT_EQ((*who)->tenant, "beta");
  who = store->authenticate(admin->second);
  ASSERT_TRUE(who.ok() && who->has_value());
  EXPECT_TRUE((*who)->admin);
  EXPECT_EQ((*who)->tenant, "");

  // Wrong keys.
  std::string wrong = key;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  for (const std::string& k : {wrong, std::string(""), std::string("rk-"), key + "0",
                               key.substr(0, key.size() - 1), std::string(10000, 'x')}) {
    who = store->authenticate(k);
    ASSERT_TRUE(who.ok());
    EXPECT_FALSE(who->has_value()) << k.substr(0, 80);
  }

  // The hash is an HMAC of the key, not the key.
  const std::string hash = store->key_hash(key);
  EXPECT_EQ(hash.size(), 32u);
  EXPECT_EQ(hash.find(key), std::string::npos);
  EXPECT_NE(store->key_hash(wrong), hash);

  // Listing.
  auto keys = store->list_keys();
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->size(), 3u);
  keys = store->list_keys("acme");
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].id, info.id);

  // Revoked keys never authenticate; a revoked key stays listed.
  ASSERT_TRUE(store->revoke_key(info.id).ok());
  who = store->authenticate(key);
  ASSERT_TRUE(who.ok());
  EXPECT_FALSE(who->has_value());
  keys = store->list_keys("acme");
  ASSERT_TRUE(keys.ok() && keys->size() == 1u);
  EXPECT_GT((*keys)[0].revoked_at, 0);
  auto st = store->revoke_key("key_000000000000");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::NOT_FOUND);

  // A deleted tenant's keys stop working (revoked, rows kept), even if the id comes back.
  ASSERT_TRUE(store->delete_tenant("beta").ok());
  who = store->authenticate(b->second);
  ASSERT_TRUE(who.ok());
  EXPECT_FALSE(who->has_value());
  ASSERT_TRUE(store->create_tenant(tenant("beta")).ok());
  who = store->authenticate(b->second);
  ASSERT_TRUE(who.ok());
  EXPECT_FALSE(who->has_value());
  keys = store->list_keys();
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->size(), 3u);
  for (const KeyInfo& k : *keys) {
    if (k.id == b->first.id) {
      EXPECT_GT(k.revoked_at, 0);
    }
  }

  // Key creation errors.
  auto bad = store->create_key("nobody", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::NOT_FOUND);
  bad = store->create_key("", "");
  ASSERT_FALSE(bad.ok());
  bad = store->create_key("acme", "", /*admin=*/true);
  ASSERT_FALSE(bad.ok());

  // The snapshot holds the active keys only, with their hashes.
  auto snap = store->snapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->tenants.size(), 2u);
  ASSERT_EQ(snap->keys.size(), 1u);
  EXPECT_EQ(snap->keys[0].info.id, admin->first.id);
  EXPECT_EQ(snap->keys[0].hash, store->key_hash(admin->second));
}

TEST_F(StoreTest, KeyTextIsNowhereInTheDatabase) {
  std::vector<std::string> keys;
  {
    auto store = open_store();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->create_tenant(tenant("acme")).ok());
    for (int i = 0; i < 5; ++i) {
      auto k = store->create_key("acme", "k" + std::to_string(i));
      ASSERT_TRUE(k.ok());
      keys.push_back(k->second);
    }
  }
  // Every file of the database: the main file and (if still there) the WAL.
  std::string bytes;
  for (const auto& e : fs::directory_iterator(dir_)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("realm.db", 0) == 0 && name != "realm.db.secret") {
      bytes += read_bytes(e.path().string());
    }
  }
  ASSERT_GT(bytes.size(), 0u);
  for (const std::string& k : keys) {
    EXPECT_EQ(bytes.find(k), std::string::npos);
    EXPECT_EQ(bytes.find(k.substr(3)), std::string::npos);  // not even the hex part
  }
}

TEST_F(StoreTest, SecretFileIsPrivateAndReused) {
  std::string key;
  {
    auto store = open_store();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->create_tenant(tenant("acme")).ok());
    auto k = store->create_key("acme", "");
    ASSERT_TRUE(k.ok());
    key = k->second;
  }
  struct stat st;
  ASSERT_EQ(::stat((db_ + ".secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string secret = read_bytes(db_ + ".secret");
  while (!secret.empty() && secret.back() == '\n') secret.pop_back();
  EXPECT_EQ(secret.size(), 64u);
  EXPECT_EQ(secret.find_first_not_of("0123456789abcdef"), std::string::npos);

  // A second open of the same files sees the same keys.
  auto again = open_store();
  ASSERT_TRUE(again);
  auto who = again->authenticate(key);
  ASSERT_TRUE(who.ok());
  EXPECT_TRUE(who->has_value());
  EXPECT_EQ(read_bytes(db_ + ".secret").substr(0, 64), secret);

  // Another secret: the same key no longer authenticates.
  const std::string other = dir_ + "/other.secret";
  std::ofstream(other) << std::string(64, 'f') << "\n";
  auto with_other = open_store("", other);
  ASSERT_TRUE(with_other);
  who = with_other->authenticate(key);
  ASSERT_TRUE(who.ok());
  EXPECT_FALSE(who->has_value());
}

TEST_F(StoreTest, MissingSecretWithActiveKeysIsRefused) {
  std::string key;
  {
    auto store = open_store();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->create_tenant(tenant("acme")).ok());
    auto k = store->create_key("acme", "ci");
    ASSERT_TRUE(k.ok());
    key = k->second;
    ASSERT_TRUE(store->create_key("", "ops", /*admin=*/true).ok());
  }
  const std::string secret = db_ + ".secret";
  const std::string saved = read_bytes(secret);
  ASSERT_TRUE(fs::remove(secret));

  // No new secret that would make both keys fail: an error naming both files and the way out.
  auto s = Store::open(db_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::FAILED_PRECONDITION);
  const std::string& msg = s.error().message;
  EXPECT_NE(msg.find("the key secret " + secret + " is missing"), std::string::npos) << msg;
  EXPECT_NE(msg.find(db_ + " holds 2 active keys"), std::string::npos) << msg;
  EXPECT_NE(msg.find("restore the secret file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("revoke the keys"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(secret));
  // The same for a --secret-file path that does not exist.
  s = Store::open(db_, dir_ + "/elsewhere.secret");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("elsewhere.secret is missing"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir_ + "/elsewhere.secret"));

  // Restored, the keys work again.
  std::ofstream(secret) << saved;
  {
    auto store = open_store();
    ASSERT_TRUE(store);
    auto who = store->authenticate(key);
    ASSERT_TRUE(who.ok());
    EXPECT_TRUE(who->has_value());
  }

  // With every key revoked a missing secret is made anew, as for a new database.
  ASSERT_TRUE(fs::remove(secret));
  exec_sql("UPDATE keys SET revoked_at = strftime('%s') WHERE revoked_at = 0");
  auto store = open_store();
  ASSERT_TRUE(store);
  EXPECT_TRUE(fs::exists(secret));
  EXPECT_NE(read_bytes(secret), saved);
  auto k = store->create_key("acme", "new");
  ASSERT_TRUE(k.ok());
  auto who = store->authenticate(k->second);
  ASSERT_TRUE(who.ok());
  EXPECT_TRUE(who->has_value());
}

TEST_F(StoreTest, BadSecretFilesAreErrors) {
  const std::string empty = dir_ + "/empty.secret";
  std::ofstream(empty).close();
  auto s = Store::open(db_, empty);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("empty.secret"), std::string::npos) << s.error().message;

  const std::string short_secret = dir_ + "/short.secret";
  std::ofstream(short_secret) << "0123456789abcdef0123456789abcde\n";  // 31 characters
  s = Store::open(db_, short_secret);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("31 characters"), std::string::npos) << s.error().message;

  // A folder where the file should be: unreadable.
  const std::string folder = dir_ + "/folder.secret";
  fs::create_directory(folder);
  s = Store::open(db_, folder);
  ASSERT_FALSE(s.ok());

  // An operator's own secret of 32 or more characters is fine.
  const std::string mine = dir_ + "/mine.secret";
  std::ofstream(mine) << std::string(40, 'z');
  EXPECT_TRUE(Store::open(db_, mine).ok());
}

TEST_F(StoreTest, CreatesTheParentFolder) {
  const std::string nested = dir_ + "/a/b/c/realm.db";
  auto store = open_store(nested);
  ASSERT_TRUE(store);
  EXPECT_TRUE(fs::exists(nested));
  EXPECT_TRUE(fs::exists(nested + ".secret"));
}

TEST_F(StoreTest, DataVersionChangesAfterAnotherConnectionCommits) {
  auto reader = open_store();
  auto writer = open_store();
  ASSERT_TRUE(reader && writer);
  auto v1 = reader->data_version();
  ASSERT_TRUE(v1.ok());
  auto v1b = reader->data_version();
  ASSERT_TRUE(v1b.ok());
  EXPECT_EQ(*v1, *v1b);
  ASSERT_TRUE(writer->create_tenant(tenant("acme")).ok());
  auto v2 = reader->data_version();
  ASSERT_TRUE(v2.ok());
  EXPECT_NE(*v1, *v2);
  // And the reader sees the change.
  auto t = reader->get_tenant("acme");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->has_value());
}

TEST_F(StoreTest, MigrationReopensAndRefusesNewerVersions) {
  EXPECT_GE(Store::schema_version(), 1);
  {
    auto store = open_store();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->create_tenant(tenant("acme")).ok());
  }
  {
    auto store = open_store();
    ASSERT_TRUE(store);
    auto t = store->get_tenant("acme");
    ASSERT_TRUE(t.ok());
    EXPECT_TRUE(t->has_value());
  }
  exec_sql("PRAGMA user_version = 999");
  auto s = Store::open(db_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error().message.find("999"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("newer"), std::string::npos) << s.error().message;
}

TEST_F(StoreTest, UsageSummaryAndTokensSince) {
  auto store = open_store();
  ASSERT_TRUE(store);
  auto row = [](int64_t ts, std::string tenant, std::string model, int64_t p, int64_t c,
                int64_t cached, int status) {
    UsageRow u;
    u.ts_ms = ts;
    u.request_id = "req-" + std::to_string(ts);
    u.tenant = std::move(tenant);
    u.key_id = "key_000000000001";
    u.model = std::move(model);
    u.endpoint = "/v1/completions";
    u.prompt_tokens = p;
    u.completion_tokens = c;
    u.cached_tokens = cached;
    u.ttft_ms = status == 200 ? 12.5 : -1;
    u.duration_ms = 100;
    u.status = status;
    u.finish_reason = status == 200 ? "stop" : "error";
    return u;
  };
  std::vector<UsageRow> rows = {
      row(1000, "acme", "llama", 10, 5, 2, 200), row(2000, "acme", "llama", 20, 7, 0, 200),
      row(3000, "acme", "qwen", 3, 0, 0, 500),   row(4000, "beta", "llama", 100, 50, 40, 200),
      row(5000, "acme", "llama", 1, 1, 1, 499),
  };
  ASSERT_TRUE(store->append_usage(rows).ok());
  ASSERT_TRUE(store->append_usage({}).ok());

  auto all = store->usage_summary("", 0);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].tenant, "acme");
  EXPECT_EQ((*all)[0].model, "llama");
  EXPECT_EQ((*all)[0].requests, 3);
  EXPECT_EQ((*all)[0].errors, 1);
  EXPECT_EQ((*all)[0].prompt_tokens, 31);
  EXPECT_EQ((*all)[0].completion_tokens, 13);
  EXPECT_EQ((*all)[0].cached_tokens, 3);
  EXPECT_EQ((*all)[1].model, "qwen");
  EXPECT_EQ((*all)[1].errors, 1);
  EXPECT_EQ((*all)[2].tenant, "beta");
  EXPECT_EQ((*all)[2].prompt_tokens, 100);

  auto acme_late = store->usage_summary("acme", 2000);
  ASSERT_TRUE(acme_late.ok());
  ASSERT_EQ(acme_late->size(), 2u);
  EXPECT_EQ((*acme_late)[0].requests, 2);
  EXPECT_EQ((*acme_late)[0].prompt_tokens, 21);
  EXPECT_EQ((*acme_late)[1].model, "qwen");

  auto none = store->usage_summary("nobody", 0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  none = store->usage_summary("", 6000);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  auto tokens = store->tokens_since("acme", 0);
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ(*tokens, 10 + 5 + 20 + 7 + 3 + 1 + 1);
  tokens = store->tokens_since("acme", 3000);
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ(*tokens, 3 + 1 + 1);
  tokens = store->tokens_since("nobody", 0);
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ(*tokens, 0);
}

// The admin API's conversions, which `realm usage|tenants|keys --json` print too.
TEST_F(StoreTest, AdminParseSince) {
  const int64_t now = 1'700'000'000'000;  // 2023-11-14T22:13:20Z
  auto ms = [&](const std::string& s) {
    auto r = parse_since(s, now);
    EXPECT_TRUE(r.ok()) << s << ": " << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : -1;
  };
  EXPECT_EQ(ms("2021-01-01"), 1'609'459'200'000);
  EXPECT_EQ(ms("2019-12-31T23:59:59Z"), 1'577'836'799'000);
  EXPECT_EQ(ms("1609459200"), 1'609'459'200'000);  // Unix seconds
  EXPECT_EQ(ms("0"), 0);
  EXPECT_EQ(ms("90s"), now - 90'000);
  EXPECT_EQ(ms("30m"), now - 30 * 60'000);
  EXPECT_EQ(ms("24h"), now - 24 * 3'600'000);
  EXPECT_EQ(ms("7d"), now - 7 * 86'400'000);
  EXPECT_EQ(ms("2w"), now - 14 * int64_t{86'400'000});
  EXPECT_EQ(ms("100000w"), 0);  // before 1970: every row
  for (const char* bad :
       {"", "yesterday", "2024-13-01", "2024-02-30", "2024-01-01T25:00:00Z", "7x", "h", "-1",
        "2024-01-01 00:00:00", "1969-12-31", "+1d", "1234567890123", "99999999999999999999d"}) {
    auto r = parse_since(bad, now);
    ASSERT_FALSE(r.ok()) << "'" << bad << "'";
    EXPECT_NE(r.error().message.find("YYYY-MM-DD"), std::string::npos) << r.error().message;
  }
  // Without `now`: relative to the clock.
  auto r = parse_since("1h");
  ASSERT_TRUE(r.ok());
  EXPECT_GT(*r, now);
}

TEST_F(StoreTest, AdminUsageJsonIsTheCliShape) {
  UsageSummary a{"acme", "llama", 2, 1, 30, 12, 2}, b{"beta", "qwen", 1, 0, 3, 1, 0};
  const nlohmann::ordered_json all = usage_json({}, "", std::nullopt);
  EXPECT_EQ(all.dump(), R"({"since":null,"since_ms":0,"tenant":null,"rows":[],"total":)"
                        R"({"requests":0,"errors":0,"prompt_tokens":0,"completion_tokens":0,)"
                        R"("cached_tokens":0}})");
  const nlohmann::ordered_json j = usage_json({a, b}, "acme", int64_t{1'609'459'200'000});
  EXPECT_EQ(j["since"], "2021-01-01T00:00:00Z");
  EXPECT_EQ(j["since_ms"], 1'609'459'200'000);
  EXPECT_EQ(j["tenant"], "acme");
  ASSERT_EQ(j["rows"].size(), 2u);
  EXPECT_EQ(j["rows"][0].dump(),
            R"({"tenant":"acme","model":"llama","requests":2,"errors":1,"prompt_tokens":30,)"
            R"("completion_tokens":12,"cached_tokens":2})");
  EXPECT_EQ(j["total"].dump(), R"({"requests":3,"errors":1,"prompt_tokens":33,)"
                               R"("completion_tokens":13,"cached_tokens":2})");
  // A --since before 1970 is still a given since.
  EXPECT_EQ(usage_json({}, "", int64_t{0})["since"], "1970-01-01T00:00:00Z");
}

TEST_F(StoreTest, AdminUsageRouteReturnsTheCliShape) {
  auto store = open_store();
  ASSERT_TRUE(store);
  UsageRow u;
  u.ts_ms = 1'609'459'200'000 + 5000;
  u.tenant = "acme";
  u.model = "llama";
  u.prompt_tokens = 4;
  ASSERT_TRUE(store->append_usage({&u, 1}).ok());
  AdminReply r = admin_request(*store, "GET", "/admin/usage", "", "");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body["since"].is_null());
  EXPECT_EQ(r.body["since_ms"], 0);
  EXPECT_TRUE(r.body["tenant"].is_null());
  EXPECT_EQ(r.body["total"]["prompt_tokens"], 4);
  r = admin_request(*store, "GET", "/admin/usage", "tenant=acme&since=2021-01-01", "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body["since"], "2021-01-01T00:00:00Z");
  EXPECT_EQ(r.body["tenant"], "acme");
  ASSERT_EQ(r.body["rows"].size(), 1u);
  r = admin_request(*store, "GET", "/admin/usage", "since=1609459206", "");  // Unix seconds
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body["rows"].empty());
  r = admin_request(*store, "GET", "/admin/usage", "since=1w", "");
  EXPECT_EQ(r.status, 200);
  r = admin_request(*store, "GET", "/admin/usage", "since=yesterday", "");
  EXPECT_EQ(r.status, 400);

  // Keys and tenants: the CLI's fields, null tenant / revoked_at when unset.
  ASSERT_TRUE(store->create_tenant(tenant("acme")).ok());
  ASSERT_TRUE(store->create_key("", "ops", /*admin=*/true).ok());
  r = admin_request(*store, "GET", "/admin/keys", "", "");
  ASSERT_EQ(r.body["data"].size(), 1u);
  EXPECT_EQ(key_json((*store->list_keys())[0]).dump(),
            nlohmann::ordered_json({{"id", r.body["data"][0]["id"]},
                                    {"tenant", nullptr},
                                    {"name", "ops"},
                                    {"admin", true},
                                    {"created_at", r.body["data"][0]["created_at"]},
                                    {"revoked_at", nullptr}})
                .dump());
  auto t = store->get_tenant("acme");
  ASSERT_TRUE(t.ok() && t->has_value());
  std::vector<std::string> fields;
  const nlohmann::ordered_json tj = tenant_json(**t);
  for (const auto& [k, v] : tj.items()) fields.push_back(k);
  EXPECT_EQ(fields, (std::vector<std::string>{"id", "models", "guest", "rpm", "tpm", "concurrency",
                                              "daily_tokens", "memory_mb", "weight", "created_at",
                                              "updated_at"}));
}

TEST_F(StoreTest, TwoStoresWriteAtOnce) {
  auto a = open_store();
  auto b = open_store();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->create_tenant(tenant("acme")).ok());
  constexpr int kRows = 200;
  std::atomic<int> failures{0};
  auto writer = [&](Store* s, const std::string& who) {
    for (int i = 0; i < kRows; ++i) {
      UsageRow u;
      u.ts_ms = i;
      u.tenant = "acme";
      u.model = who;
      u.prompt_tokens = 1;
      if (!s->append_usage({&u, 1}).ok()) failures++;
      if (i % 20 == 0) {
        auto k = s->create_key("acme", who);
        if (!k.ok()) failures++;
        TenantConfig t = tenant("acme");
        t.rpm = i;
        if (!s->update_tenant(t).ok()) failures++;
      }
    }
  };
  std::thread ta(writer, a.get(), "a");
  std::thread tb(writer, b.get(), "b");
  ta.join();
  tb.join();
  EXPECT_EQ(failures.load(), 0);
  auto tokens = a->tokens_since("acme", 0);
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ(*tokens, 2 * kRows);
  auto keys = b->list_keys("acme");
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->size(), 2u * (kRows / 20));
}

TEST_F(StoreTest, TwoStoresOpenANewDatabaseAtOnce) {
  std::unique_ptr<Store> a, b;
  std::string err_a, err_b;
  auto opener = [&](std::unique_ptr<Store>& out, std::string& err) {
    auto s = Store::open(db_);
    if (s.ok()) {
      out = std::move(s).value();
    } else {
      err = s.error().message;
    }
  };
  std::thread ta(opener, std::ref(a), std::ref(err_a));
  std::thread tb(opener, std::ref(b), std::ref(err_b));
  ta.join();
  tb.join();
  ASSERT_TRUE(a) << err_a;
  ASSERT_TRUE(b) << err_b;
  // Both use the one secret.
  ASSERT_TRUE(a->create_tenant(tenant("acme")).ok());
  auto k = a->create_key("acme", "");
  ASSERT_TRUE(k.ok());
  auto who = b->authenticate(k->second);
  ASSERT_TRUE(who.ok());
  EXPECT_TRUE(who->has_value());
}

TEST_F(StoreTest, GarbageDatabaseIsAnError) {
  std::ofstream(db_, std::ios::binary) << std::string(8192, '\x5a');
  auto s = Store::open(db_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find(db_), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("not a database"), std::string::npos) << s.error().message;
}

TEST_F(StoreTest, UnwritableLocationIsAnError) {
  // A regular file where a folder should be (an error even for root, unlike permissions).
  const std::string file = dir_ + "/plain";
  std::ofstream(file) << "x";
  auto s = Store::open(file + "/sub/realm.db");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::UNAVAILABLE);
  EXPECT_NE(s.error().message.find("plain"), std::string::npos) << s.error().message;

  s = Store::open(file + "/realm.db");
  ASSERT_FALSE(s.ok());

  // A folder without write permission (root ignores permissions, so only checked as others).
  if (::geteuid() != 0) {
    const std::string ro = dir_ + "/ro";
    fs::create_directory(ro);
    ::chmod(ro.c_str(), 0500);
    s = Store::open(ro + "/realm.db");
    EXPECT_FALSE(s.ok());
    ::chmod(ro.c_str(), 0700);
  }
}

TEST_F(StoreTest, DefaultDbPath) {
  const char* old_home = std::getenv("REALM_HOME");
  const std::string saved = old_home ? old_home : "";
  ::setenv("REALM_HOME", "/srv/realm", 1);
  EXPECT_EQ(default_db_path(), "/srv/realm/realm.db");
  ::unsetenv("REALM_HOME");
  const char* home = std::getenv("HOME");
  if (home && *home) {
    EXPECT_EQ(default_db_path(), std::string(home) + "/.cache/realm/realm.db");
  }
  if (old_home) ::setenv("REALM_HOME", saved.c_str(), 1);
}

}  // namespace
}  // namespace realm::server
