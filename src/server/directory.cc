#include "server/directory.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include <cstdio>

namespace realm::server {

Expected<std::unique_ptr<Directory>> Directory::create(Store* store, sandbox::Sandbox* sandbox,
                                                       std::span<const uint8_t> default_guest,
                                                       DirectoryOptions options) {
  std::unique_ptr<Directory> d(new Directory());
  d->store_ = store;
  d->sandbox_ = sandbox;
  d->options_ = options;
  auto module = sandbox->compile_module(default_guest);
  if (!module) return make_error("the default guest: ", module.error().message);
  d->default_module_ = *module;
  if (!store) {
    TenantConfig t;
    t.id = "default";
    t.concurrency = 1 << 20;
    StoreSnapshot snap;
    snap.tenants.push_back(t);
    REALM_TRY(d->apply(std::move(snap)));
    return d;
  }
  REALM_TRY(d->reload());
  Directory* p = d.get();
  d->poller_ = std::thread([p] {
    int64_t seen = -1;
    if (auto v = p->store_->data_version()) seen = *v;
    while (!p->stop_) {
      std::this_thread::sleep_for(p->options_.poll);
      auto v = p->store_->data_version();
      if (!v) continue;  // the database is away; keep serving what we have
      if (*v != seen) {
        seen = *v;
        if (auto st = p->reload(); !st) {
          std::fprintf(stderr, "realm serve: cannot reload tenants and keys: %s\n",
                       st.error().message.c_str());
        }
      }
    }
  });
  return d;
}

Directory::~Directory() {
  stop_ = true;
  if (poller_.joinable()) poller_.join();
}

Status Directory::reload() {
  if (!store_) return {};
  std::lock_guard<std::mutex> lock(reload_mu_);
  auto snap = store_->snapshot();
  if (!snap) return snap.take_error();
  return apply(std::move(*snap));
}

sandbox::TenantRecord Directory::record_of(const TenantConfig& t) const {
  sandbox::TenantRecord r;
  r.id = t.id;
  r.allowed_models = t.models.empty() ? std::vector<std::string>{"*"} : t.models;
  r.limits.memory_bytes = static_cast<uint64_t>(t.memory_mb) << 20;
  r.weight = t.weight;
  r.limits.max_session_ctx = options_.n_ctx;
  r.limits.token_budget = options_.n_ctx + 1;
  // Requests past the concurrency limit wait in the admission queue, so a guest's sessions (one
  // per request for the default guest; a custom guest may open a few) never run out mid-run.
  r.limits.max_sessions =
      static_cast<int32_t>(std::min<int64_t>(int64_t{t.concurrency} * 2, 1 << 20));
  return r;
}

Expected<std::shared_ptr<const sandbox::WasmModule>> Directory::module_for(
    const std::string& path) {
  if (path.empty()) return default_module_;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return make_error(ErrorCode::NOT_FOUND, "the guest module ", path, " cannot be read");
  }
  const int64_t mtime = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  auto it = modules_.find(path);
  if (it != modules_.end() && it->second.mtime_ns == mtime && it->second.size == st.st_size) {
    return it->second.module;
  }
  auto m = sandbox_->load_module(path);
  if (!m) return make_error("the guest module ", path, ": ", m.error().message);
  modules_[path] = {mtime, static_cast<int64_t>(st.st_size), *m};
  return *m;
}

Status Directory::apply(StoreSnapshot snap) {
  std::map<std::string, std::shared_ptr<const TenantConfig>> tenants;
  std::map<std::string, std::string> errors;
  for (TenantConfig& t : snap.tenants) {
    auto cfg = std::make_shared<const TenantConfig>(std::move(t));
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto old = tenants_.find(cfg->id);
      auto err = guest_errors_.find(cfg->id);
      const bool same = old != tenants_.end() && old->second->updated_at == cfg->updated_at &&
                        old->second->guest == cfg->guest && err == guest_errors_.end();
      if (same && (cfg->guest.empty() || modules_.count(cfg->guest))) {
        tenants[cfg->id] = old->second;
        continue;
      }
    }
    auto module = module_for(cfg->guest);
    if (!module) {
      errors[cfg->id] = module.error().message;
      std::fprintf(stderr, "realm serve: tenant %s: %s\n", cfg->id.c_str(),
                   module.error().message.c_str());
    } else if (auto st = sandbox_->add_tenant(record_of(*cfg), *module); !st) {
      errors[cfg->id] = st.error().message;
    }
    tenants[cfg->id] = cfg;
  }
  std::map<std::string, StoreSnapshot::Key> keys;
  for (auto& k : snap.keys) keys[k.hash] = std::move(k);
  std::lock_guard<std::mutex> lock(mu_);
  tenants_ = std::move(tenants);
  guest_errors_ = std::move(errors);
  keys_ = std::move(keys);
  return {};
}

std::optional<Identity> Directory::authenticate(std::string_view key) const {
  if (!store_) return anonymous();
  const std::string hash = store_->key_hash(key);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.lower_bound(hash);
  if (it == keys_.end() || it->first.size() != hash.size() ||
      CRYPTO_memcmp(it->first.data(), hash.data(), hash.size()) != 0) {
    return std::nullopt;
  }
  const KeyInfo& k = it->second.info;
  if (k.revoked_at != 0) return std::nullopt;
  Identity id;
  id.key = k;
  if (k.admin) return id;
  auto t = tenants_.find(k.tenant);
  if (t == tenants_.end()) return std::nullopt;
  id.tenant = t->second;
  if (auto e = guest_errors_.find(k.tenant); e != guest_errors_.end()) id.guest_error = e->second;
  return id;
}

Identity Directory::anonymous() const {
  std::lock_guard<std::mutex> lock(mu_);
  Identity id;
  id.key.id = "-";
  id.key.tenant = "default";
  auto t = tenants_.find("default");
  if (t != tenants_.end()) id.tenant = t->second;
  return id;
}

std::vector<std::string> Directory::tenant_ids() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> ids;
  for (const auto& [id, t] : tenants_) ids.push_back(id);
  return ids;
}

}  // namespace realm::server
