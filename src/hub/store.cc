#include "hub/store.h"

#include "util/realm_home.h"

#include "gguf/split.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "gguf/reader.h"
#include "hub/client.h"
#include "hub/progress.h"
#include "hub/sha256.h"
#include "hub/spec.h"

namespace realm::hub {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

constexpr const char* kManifest = "manifest.json";
constexpr const char* kStaging = ".partial";  // under models/: downloads in progress
constexpr int kManifestVersion = 1;

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Status mkdirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(ErrorCode::INTERNAL, "cannot create ", dir, ": ", ec.message());
  return {};
}

Status fsync_path(const std::string& path, bool dir) {
  int fd = ::open(path.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return make_error(ErrorCode::INTERNAL, "cannot open ", path, ": ", strerror(errno));
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return make_error(ErrorCode::INTERNAL, "cannot fsync ", path, ": ", strerror(e));
  return {};
}

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Expected<Manifest> read_manifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifest;
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::NOT_FOUND, "no manifest ", path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  auto bad = [&](const char* what) { return make_error("bad manifest ", path, ": ", what); };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  Manifest m;
  m.entry_dir = dir;
  try {
    m.name = j.at("name").get<std::string>();
    m.spec = j.value("spec", m.name);
    const auto& src = j.at("source");
    m.source_kind = src.at("kind").get<std::string>();
    m.endpoint = src.value("endpoint", "");
    m.repo = src.value("repo", "");
    m.revision = src.value("revision", "");
    m.url = src.value("url", "");
    for (const auto& f : j.at("files")) {
      ManifestFile mf;
      mf.name = f.at("name").get<std::string>();
      mf.source = f.value("source", "");
      mf.size = f.at("size").get<uint64_t>();
      mf.sha256 = f.value("sha256", "");
      if (mf.name.empty() || mf.name.find('/') != std::string::npos || mf.name[0] == '.') {
        return bad("bad file name");
      }
      m.files.push_back(std::move(mf));
    }
    m.pulled_at = j.value("pulled_at", "");
  } catch (const nlohmann::json::exception& e) {
    return make_error("bad manifest ", path, ": ", e.what());
  }
  if (m.files.empty()) return bad("no files");
  return m;
}

Status write_manifest(const std::string& dir, const Manifest& m) {
  const std::string path = dir + "/" + kManifest;
  const std::string tmp = path + ".tmp";
  std::string text = manifest_json(m).dump(2) + "\n";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(ErrorCode::INTERNAL, "cannot create ", tmp, ": ", strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t w = ::write(fd, text.data() + done, text.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      bool full = e == ENOSPC || e == EDQUOT || e == EFBIG;
      return make_error(full ? ErrorCode::LIMIT : ErrorCode::INTERNAL, full ? "disk full: " : "",
                        "cannot write ", tmp, ": ", strerror(e));
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return make_error(ErrorCode::INTERNAL, "cannot write ", tmp, ": ", strerror(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return make_error(ErrorCode::INTERNAL, "cannot rename ", tmp, ": ", strerror(errno));
  }
  return {};
}

// The names `arg` may stand for, most specific first: its normalized SPEC name, then as given.
std::vector<std::string> candidate_names(std::string_view arg) {
  std::vector<std::string> out;
  if (auto s = parse_spec(arg); s.ok()) out.push_back(s->name);
  if (out.empty() || out[0] != arg) out.emplace_back(arg);
  return out;
}

bool same_source(const Manifest& m, const Spec& s) {
  if (s.kind == SpecKind::URL) return m.source_kind == "url" && m.url == s.url;
  return m.source_kind == "hub" && m.repo == s.repo && m.revision == s.revision;
}

std::string url_basename(std::string_view url) {
  std::string_view path = url.substr(0, url.find_first_of("?#"));
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// One file to fetch.
struct Planned {
  std::string name;    // base name in the entry
  std::string source;  // path in the repo, or URL
  std::string url;
  std::optional<uint64_t> size;
  std::optional<std::string> sha256;
};

Expected<std::vector<Planned>> plan(const Spec& spec, const HubClient& client) {
  std::vector<Planned> out;
  if (spec.kind == SpecKind::URL) {
    std::string base = percent_decode(url_basename(spec.url));
    std::vector<std::string> names{base};
    if (auto sn = gguf::parse_split_path(base)) {
      names.clear();
      for (uint64_t k = 1; k <= sn->count; ++k)
        names.push_back(gguf::split_path(sn->prefix, k, sn->count));
    }
    std::string_view u = spec.url;
    std::string_view no_query = u.substr(0, u.find_first_of("?#"));
    std::string dir_url(no_query.substr(0, no_query.rfind('/') + 1));
    std::string query(u.substr(no_query.size()));
    for (const auto& n : names) {
      Planned p;
      p.name = n;
      p.url = n == base ? spec.url : dir_url + url_encode_path(n) + query;
      p.source = p.url;
      out.push_back(std::move(p));
    }
    return out;
  }
  auto listing = client.list_files(spec.repo, spec.revision);
  if (!listing) return listing.take_error();
  std::vector<std::string> paths;
  for (const auto& f : *listing) paths.push_back(f.path);
  std::vector<std::string> picked;
  if (spec.kind == SpecKind::REPO) {
    auto p = pick_quant_files(paths, spec.quant, spec.repo);
    if (!p) return p.take_error();
    picked = std::move(*p);
  } else {
    if (std::find(paths.begin(), paths.end(), spec.file) == paths.end()) {
      std::string ggufs;
      for (const auto& p : paths) {
        if (p.size() > 5 && (p.ends_with(".gguf") || p.ends_with(".GGUF"))) {
          ggufs += (ggufs.empty() ? "" : ", ") + p;
        }
      }
      return make_error(ErrorCode::NOT_FOUND, "repo ", spec.repo, " has no file ", spec.file,
                        " at revision ", spec.revision,
                        ggufs.empty() ? " (it has no GGUF files)" : "; its GGUF files: " + ggufs);
    }
    auto p = shard_set(paths, spec.file);
    if (!p) return p.take_error();
    picked = std::move(*p);
  }
  for (const auto& path : picked) {
    const HubFile* f = nullptr;
    for (const auto& x : *listing) {
      if (x.path == path) f = &x;
    }
    Planned p;
    size_t slash = path.rfind('/');
    p.name = slash == std::string::npos ? path : path.substr(slash + 1);
    p.source = path;
    p.url = client.resolve_url(spec.repo, spec.revision, path);
    if (f) {
      p.size = f->size;
      p.sha256 = f->sha256;
    }
    out.push_back(std::move(p));
  }
  return out;
}

// An exclusive lock on .partial/<entry>.lock for the pull, released (and removed) at the end.
class PullLock {
 public:
  static Expected<PullLock> take(const std::string& path, const std::string& name) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      return make_error(ErrorCode::INTERNAL, "cannot create ", path, ": ", strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return make_error(ErrorCode::FAILED_PRECONDITION, "another realm pull of ", name,
                        " is running (", path, " is locked)");
    }
    return PullLock(fd, path);
  }
  PullLock(PullLock&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  PullLock& operator=(PullLock&&) = delete;
  ~PullLock() {
    if (fd_ >= 0) {
      ::unlink(path_.c_str());
      ::close(fd_);
    }
  }

 private:
  PullLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

uint64_t size_or_zero(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// Checks a downloaded file is a GGUF file (and, for a shard, the shard it claims to be).
Status validate_gguf(const std::string& path, const std::string& name, const std::string& source,
                     uint32_t shard_no, uint32_t shard_count) {
  auto g = gguf::GgufFile::open(path);
  if (!g) {
    return make_error(name, " from ", source, " is not a valid GGUF file (", g.error().message,
                      ")");
  }
  if (shard_count > 1) {
    auto no = g->get_uint("split.no");
    auto count = g->get_uint("split.count");
    if (no && count && (*no != shard_no - 1 || *count != shard_count)) {
      return make_error(name, " from ", source, " says it is shard ", *no + 1, " of ", *count,
                        ", its name says ", shard_no, " of ", shard_count);
    }
  }
  return {};
}

}  // namespace

nlohmann::ordered_json manifest_json(const Manifest& m) {
  ordered_json j;
  j["realm_manifest"] = kManifestVersion;
  j["name"] = m.name;
  j["spec"] = m.spec;
  ordered_json src;
  src["kind"] = m.source_kind;
  if (m.source_kind == "hub") {
    src["endpoint"] = m.endpoint;
    src["repo"] = m.repo;
    src["revision"] = m.revision;
  } else {
    src["url"] = m.url;
  }
  j["source"] = src;
  ordered_json files = ordered_json::array();
  for (const auto& f : m.files) {
    files.push_back(
        {{"name", f.name}, {"source", f.source}, {"size", f.size}, {"sha256", f.sha256}});
  }
  j["files"] = files;
  j["pulled_at"] = m.pulled_at;
  return j;
}

uint64_t Manifest::total_size() const {
  uint64_t n = 0;
  for (const auto& f : files) n += f.size;
  return n;
}

std::string realm_home() {
  return realm::realm_home();
}

std::string models_dir() {
  return realm_home() + "/models";
}

Expected<Manifest> find_model(std::string_view name) {
  const std::string root = models_dir();
  for (const std::string& c : candidate_names(name)) {
    std::string dir = root + "/" + escape_name(c);
    if (!is_file(dir + "/" + kManifest)) continue;
    auto m = read_manifest(dir);
    if (!m) return m.take_error();
    if (m->name == c) return m;
  }
  return make_error(ErrorCode::NOT_FOUND, "no pulled model ", name, " in ", root,
                    " (realm models list shows the pulled ones)");
}

Expected<ResolvedModel> resolve_model(std::string_view arg) {
  ResolvedModel r;
  const std::string a(arg);
  if (is_file(a)) {
    r.path = a;
    r.name = a;
    return r;
  }
  auto m = find_model(arg);
  if (!m) {
    if (m.error().code != ErrorCode::NOT_FOUND) return m.take_error();
    // A name `realm pull` takes is suggested as it is; anything else (a path) gets the forms.
    const std::string hint = parse_spec(arg).ok()
                                 ? "`realm pull " + a + "` downloads it"
                                 : "`realm pull owner/repo[:QUANT]` downloads one from the hub";
    return make_error(ErrorCode::NOT_FOUND, "cannot open ", a,
                      ": neither a file nor a pulled model (", hint,
                      "; `realm models list` shows the pulled ones)");
  }
  r.path = m->entry_dir + "/" + m->files.front().name;
  if (!is_file(r.path)) {
    return make_error(ErrorCode::NOT_FOUND, "store entry ", m->name, " is damaged: ", r.path,
                      " is missing (realm models rm ", m->name, ", then pull it again)");
  }
  r.name = m->name;
  r.in_store = true;
  r.entry_dir = m->entry_dir;
  if (!m->files.front().sha256.empty()) r.sha256 = m->files.front().sha256;
  return r;
}

Expected<std::vector<Manifest>> list_models() {
  std::vector<Manifest> out;
  const std::string root = models_dir();
  DIR* d = ::opendir(root.c_str());
  if (!d) {
    if (errno == ENOENT) return out;
    return make_error(ErrorCode::INTERNAL, "cannot read ", root, ": ", strerror(errno));
  }
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string dir = root + "/" + e->d_name;
    if (!is_file(dir + "/" + kManifest)) continue;
    if (auto m = read_manifest(dir)) out.push_back(std::move(*m));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(),
            [](const Manifest& a, const Manifest& b) { return a.name < b.name; });
  return out;
}

Status remove_model(std::string_view name) {
  auto m = find_model(name);
  if (!m) return m.take_error();
  // Rename first so the entry disappears at once, then delete the files.
  const std::string trash = models_dir() + "/" + kStaging + "/.rm-" + std::to_string(::getpid()) +
                            "-" + escape_name(m->name);
  if (auto st = mkdirs(models_dir() + "/" + kStaging); !st) return st;
  std::string victim = m->entry_dir;
  if (::rename(m->entry_dir.c_str(), trash.c_str()) == 0) victim = trash;
  std::error_code ec;
  fs::remove_all(victim, ec);
  if (ec) return make_error(ErrorCode::INTERNAL, "cannot remove ", victim, ": ", ec.message());
  return {};
}

Expected<PullResult> pull(std::string_view spec_text, const PullOptions& options) {
  auto spec = parse_spec(spec_text, options.revision);
  if (!spec) return spec.take_error();
  HubClient client = HubClient::from_env();
  const std::string root = models_dir();
  const std::string esc = escape_name(spec->name);
  const std::string entry = root + "/" + esc;

  auto existing = [&]() -> Expected<std::optional<PullResult>> {
    if (!is_file(entry + "/" + kManifest)) return std::optional<PullResult>();
    auto m = read_manifest(entry);
    if (!m) return m.take_error();
    if (!same_source(*m, *spec)) {
      return make_error(ErrorCode::FAILED_PRECONDITION, "the store name ", spec->name,
                        " is taken by a model pulled from ",
                        m->source_kind == "url" ? m->url : m->repo + "@" + m->revision,
                        "; realm models rm ", m->name, " first");
    }
    return std::optional<PullResult>(PullResult{std::move(*m), true});
  };
  if (auto e = existing(); !e) {
    return e.take_error();
  } else if (*e) {
    return std::move(**e);
  }

  const std::string staging_root = root + "/" + kStaging;
  REALM_TRY(mkdirs(staging_root));
  auto lock = PullLock::take(staging_root + "/" + esc + ".lock", spec->name);
  if (!lock) return lock.take_error();
  if (auto e = existing(); !e) {  // pulled by someone else while we waited
    return e.take_error();
  } else if (*e) {
    return std::move(**e);
  }

  auto planned = plan(*spec, client);
  if (!planned) return planned.take_error();
  std::set<std::string> names;
  for (const auto& p : *planned) {
    if (p.name.empty() || p.name[0] == '.' || p.name == kManifest || !names.insert(p.name).second) {
      return make_error("cannot store ", p.source, " as ", p.name, " (bad or repeated file name)");
    }
  }
  const std::string stage = staging_root + "/" + esc;
  REALM_TRY(mkdirs(stage));
  // An empty staging folder left by a failed pull is removed (kept partials keep it).
  struct StageCleanup {
    std::string dir;
    bool armed = true;
    ~StageCleanup() {
      if (armed) ::rmdir(dir.c_str());  // fails (harmlessly) unless empty
    }
  } cleanup{stage};

  // Not enough space for what is left to download: say so before starting.
  uint64_t need = 0;
  bool sizes_known = true;
  for (const auto& p : *planned) {
    if (!p.size) {
      sizes_known = false;
      continue;
    }
    uint64_t have = size_or_zero(stage + "/" + p.name);
    if (have == 0) have = size_or_zero(stage + "/" + p.name + ".partial");
    need += *p.size > have ? *p.size - have : 0;
  }
  struct statvfs vfs;
  if (sizes_known && ::statvfs(stage.c_str(), &vfs) == 0) {
    uint64_t avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (need > avail) {
      return make_error(ErrorCode::LIMIT, "disk full: ", spec->name, " needs ", format_bytes(need),
                        " more but ", stage, " has ", format_bytes(avail), " free");
    }
  }

  Manifest m;
  m.name = spec->name;
  m.spec = std::string(spec_text);
  if (spec->kind == SpecKind::URL) {
    m.source_kind = "url";
    m.url = spec->url;
  } else {
    m.source_kind = "hub";
    m.endpoint = client.options().endpoint;
    m.repo = spec->repo;
    m.revision = spec->revision;
  }
  if (!options.quiet) {
    uint64_t total = 0;
    for (const auto& p : *planned) total += p.size.value_or(0);
    std::cerr << "pulling " << spec->name << ": " << planned->size()
              << (planned->size() == 1 ? " file" : " files");
    if (sizes_known) std::cerr << ", " << format_bytes(total);
    std::cerr << (spec->kind == SpecKind::URL ? "" : " from " + m.endpoint) << "\n";
  }
  const uint32_t n_files = static_cast<uint32_t>(planned->size());
  for (uint32_t i = 0; i < n_files; ++i) {
    const Planned& p = (*planned)[i];
    const std::string final_path = stage + "/" + p.name;
    const std::string partial = final_path + ".partial";
    ManifestFile mf{p.name, p.source, 0, ""};
    if (is_file(final_path)) {
      // Finished by an earlier run of this pull: checked again before it is trusted.
      Sha256 h;
      REALM_TRY(sha256_update_file(h, final_path));
      std::string sha = h.finish_hex();
      uint64_t size = size_or_zero(final_path);
      if ((!p.sha256 || *p.sha256 == sha) && (!p.size || *p.size == size)) {
        mf.size = size;
        mf.sha256 = sha;
        m.files.push_back(std::move(mf));
        continue;
      }
      ::unlink(final_path.c_str());
    }
    Progress progress(p.name, options.quiet);
    DownloadRequest req;
    req.url = p.url;
    req.partial_path = partial;
    req.expected_size = p.size;
    req.expected_sha256 = p.sha256;
    auto got =
        client.download(req, [&](uint64_t done, uint64_t total) { progress.update(done, total); });
    if (!got) {
      Error e = got.take_error();
      if (e.code != ErrorCode::LIMIT && e.code != ErrorCode::UNAVAILABLE) {
        e.message += "; nothing was added to the store";
      }
      return e;
    }
    progress.finish(got->size);
    if (auto st = validate_gguf(partial, p.name, p.source, n_files > 1 ? i + 1 : 1, n_files); !st) {
      ::unlink(partial.c_str());
      return make_error(st.error().message, "; it was deleted and nothing was added to the store");
    }
    if (!got->sha_known) {
      std::cerr << "realm: warning: " << p.source
                << " publishes no sha256; recorded the computed one, " << got->sha256 << "\n";
    }
    if (::rename(partial.c_str(), final_path.c_str()) != 0) {
      return make_error(ErrorCode::INTERNAL, "cannot rename ", partial, ": ", strerror(errno));
    }
    mf.size = got->size;
    mf.sha256 = got->sha256;
    m.files.push_back(std::move(mf));
  }
  m.pulled_at = now_utc();
  REALM_TRY(write_manifest(stage, m));
  for (const auto& f : m.files) REALM_TRY(fsync_path(stage + "/" + f.name, false));
  REALM_TRY(fsync_path(stage, true));
  if (::rename(stage.c_str(), entry.c_str()) != 0) {
    return make_error(ErrorCode::INTERNAL, "cannot move ", stage, " to ", entry, ": ",
                      strerror(errno));
  }
  cleanup.armed = false;
  REALM_TRY(fsync_path(root, true));
  m.entry_dir = entry;
  return PullResult{std::move(m), false};
}

}  // namespace realm::hub
