#include "hub/pull.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <system_error>
#include <thread>

#include "gguf/reader.h"
#include "gguf/split.h"
#include "hub/spec.h"
#include "hub/store.h"

namespace realm::hub {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

Expected<std::string> sha256_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return make_error("cannot read ", path, ": ", std::strerror(errno));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<unsigned char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) EVP_DigestUpdate(ctx, buf.data(), n);
  const bool err = std::ferror(f) != 0;
  std::fclose(f);
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  if (err) return make_error("cannot read ", path);
  std::string hex;
  for (unsigned i = 0; i < len; ++i) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", md[i]);
    hex += b;
  }
  return hex;
}

namespace {

bool is_sha256(std::string_view s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

// One libcurl easy handle with the options every request shares.
struct Curl {
  CURL* h = curl_easy_init();
  curl_slist* headers = nullptr;
  ~Curl() {
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
  }
  void setup(const std::string& url, const std::string& token) {
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    // A transfer slower than 1 byte/s for 60 s is cut (then resumed).
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "realm-pull/1");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_slist_free_all(headers);
    headers = nullptr;
    if (!token.empty()) {
      headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  }
  long status() const {
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    return code;
  }
};

size_t to_string(char* p, size_t size, size_t n, void* user) {
  auto* s = static_cast<std::string*>(user);
  if (s->size() + size * n > (64u << 20)) return 0;  // a listing over 64 MiB: refuse
  s->append(p, size * n);
  return size * n;
}

std::string http_error(long status, const std::string& what, bool token) {
  if (status == 401 || status == 403) {
    return what + ": access denied (HTTP " + std::to_string(status) + "): the repository is " +
           "gated or private" + (token ? " and HF_TOKEN does not grant it" : "; set HF_TOKEN");
  }
  if (status == 404) return what + ": not found (HTTP 404)";
  return what + ": HTTP " + std::to_string(status);
}

struct Download {
  std::FILE* file = nullptr;
  uint64_t offset = 0;   // bytes in the file
  bool restart = false;  // the server ignored the range: start over
  int write_errno = 0;
  Curl* curl = nullptr;
  std::string linked_etag, etag, location;
  // Progress.
  const PullOptions* opt = nullptr;
  std::string label;
  uint64_t total = 0;
  uint64_t session_start = 0;  // offset when this attempt began
  Clock::time_point t0 = Clock::now(), last = Clock::time_point();
  int last_decile = -1;
};

size_t on_header(char* p, size_t size, size_t n, void* user) {
  auto* d = static_cast<Download*>(user);
  std::string line(p, size * n);
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string key = line.substr(0, colon);
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    auto trim = [](std::string& v) {
      while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.pop_back();
      while (!v.empty() && v.front() == ' ') v.erase(v.begin());
      if (v.rfind("W/", 0) == 0) v.erase(0, 2);
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    };
    trim(value);
    if (key == "x-linked-etag" && d->linked_etag.empty()) d->linked_etag = value;
    if (key == "etag") d->etag = value;
  }
  return size * n;
}

size_t on_body(char* p, size_t size, size_t n, void* user) {
  auto* d = static_cast<Download*>(user);
  const long status = d->curl->status();
  if (status >= 400) return size * n;  // an error body: not the file
  if (status == 200 && d->offset > 0 && !d->restart) {
    // A 200 to a range request: the whole file comes again.
    d->restart = true;
    if (ftruncate(fileno(d->file), 0) != 0 || std::fseek(d->file, 0, SEEK_SET) != 0) {
      d->write_errno = errno;
      return 0;
    }
    d->offset = 0;
    d->session_start = 0;
  }
  if (std::fwrite(p, 1, size * n, d->file) != size * n || std::fflush(d->file) != 0) {
    d->write_errno = errno != 0 ? errno : EIO;
    return 0;
  }
  d->offset += size * n;
  return size * n;
}

void report(Download& d, bool done) {
  if (!d.opt->log || d.opt->progress == PullOptions::Progress::NONE) return;
  const auto now = Clock::now();
  const double secs = std::chrono::duration<double>(now - d.t0).count();
  const double rate = secs > 0 ? static_cast<double>(d.offset - d.session_start) / secs : 0;
  const double pct = d.total > 0 ? 100.0 * static_cast<double>(d.offset) / d.total : 0;
  char line[256];
  if (d.opt->progress == PullOptions::Progress::BAR) {
    if (!done && now - d.last < std::chrono::milliseconds(200)) return;
    d.last = now;
    const int width = 24;
    const int fill = d.total > 0 ? static_cast<int>(pct / 100 * width) : 0;
    std::string bar(static_cast<size_t>(fill), '#');
    bar.resize(width, '.');
    const double eta = rate > 0 && d.total > d.offset ? (d.total - d.offset) / rate : 0;
    std::snprintf(line, sizeof line, "\r%s [%s] %5.1f%% %s / %s  %s/s  ETA %.0fs\x1b[K%s",
                  d.label.c_str(), bar.c_str(), pct, human_bytes(d.offset).c_str(),
                  human_bytes(d.total).c_str(), human_bytes(rate).c_str(), eta, done ? "\n" : "");
    d.opt->log(line);
  } else {
    const int decile = d.total > 0 ? static_cast<int>(pct / 10) : 0;
    if (!done && decile == d.last_decile) return;
    d.last_decile = decile;
    std::snprintf(line, sizeof line, "%s: %s / %s (%.0f%%)\n", d.label.c_str(),
                  human_bytes(d.offset).c_str(), human_bytes(d.total).c_str(), pct);
    d.opt->log(line);
  }
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  report(*static_cast<Download*>(user), false);
  return 0;
}

bool disk_full(int e) {
  return e == ENOSPC || e == EFBIG || e == EDQUOT;
}

struct Fetched {
  std::string sha256_header;  // a 64-hex X-Linked-Etag or ETag, if any
};

// Downloads `url` into `partial`, resuming what it holds; `size` (0: unknown) is the expected
// length. A cut connection is resumed up to max_attempts times.
Expected<Fetched> fetch(Curl& curl, const std::string& url, const std::string& partial,
                        uint64_t size, const std::string& label, const PullOptions& opt,
                        const std::string& token) {
  Fetched out;
  std::string last_error;
  for (int attempt = 1; attempt <= opt.max_attempts; ++attempt) {
    Download d;
    d.curl = &curl;
    d.opt = &opt;
    d.label = label;
    d.total = size;
    d.file = std::fopen(partial.c_str(), "ab");
    if (!d.file) return make_error("cannot write ", partial, ": ", std::strerror(errno));
    d.offset = static_cast<uint64_t>(std::ftell(d.file));
    d.session_start = d.offset;
    if (size > 0 && d.offset == size) {  // complete from an earlier run
      std::fclose(d.file);
      return out;
    }
    if (size > 0 && d.offset > size) {  // longer than the file: start over
      std::fclose(d.file);
      d.file = std::fopen(partial.c_str(), "wb");
      if (!d.file) return make_error("cannot write ", partial, ": ", std::strerror(errno));
      d.offset = 0;
      d.session_start = 0;
    }
    curl.setup(url, token);
    curl_easy_setopt(curl.h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl.h, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(curl.h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl.h, CURLOPT_HEADERDATA, &d);
    curl_easy_setopt(curl.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl.h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl.h, CURLOPT_XFERINFODATA, &d);
    // An explicit range (not CURLOPT_RESUME_FROM, which fails on a 200): a server that ignores
    // it sends the whole file, and on_body starts over.
    const std::string range = std::to_string(d.offset) + "-";
    if (d.offset > 0) curl_easy_setopt(curl.h, CURLOPT_RANGE, range.c_str());
    const CURLcode rc = curl_easy_perform(curl.h);
    const long status = curl.status();
    std::fclose(d.file);
    for (const std::string& e : {d.linked_etag, d.etag}) {
      if (out.sha256_header.empty() && is_sha256(e)) out.sha256_header = e;
    }
    if (d.write_errno != 0) {
      if (disk_full(d.write_errno)) {
        std::error_code ec;
        fs::remove(partial, ec);  // what was written is given back
        return make_error(ErrorCode::LIMIT, "no space left writing ", partial, " (",
                          std::strerror(d.write_errno), "); the partial download was removed");
      }
      return make_error("cannot write ", partial, ": ", std::strerror(d.write_errno));
    }
    if (rc == CURLE_OK && status == 416 && size > 0) {
      // The range starts at the end: the partial file may be complete (verified next).
      return out;
    }
    if (rc == CURLE_OK && (status == 200 || status == 206)) {
      report(d, true);
      if (size > 0 && d.offset != size) {
        last_error = "got " + std::to_string(d.offset) + " of " + std::to_string(size) + " bytes";
      } else {
        return out;
      }
    } else if (rc == CURLE_OK) {
      if (status >= 500 || status == 429) {
        last_error = "HTTP " + std::to_string(status);
      } else {
        std::error_code ec;
        fs::remove(partial, ec);
        return make_error(status == 404 ? ErrorCode::NOT_FOUND : ErrorCode::INVALID_ARGUMENT,
                          http_error(status, url, !token.empty()));
      }
    } else {
      last_error = curl_easy_strerror(rc);
      if (rc != CURLE_PARTIAL_FILE && rc != CURLE_RECV_ERROR && rc != CURLE_SEND_ERROR &&
          rc != CURLE_OPERATION_TIMEDOUT && rc != CURLE_GOT_NOTHING &&
          rc != CURLE_COULDNT_CONNECT && rc != CURLE_HTTP2 && rc != CURLE_HTTP2_STREAM) {
        return make_error(ErrorCode::UNAVAILABLE, url, ": ", last_error);
      }
    }
    if (opt.log && attempt < opt.max_attempts) {
      if (opt.progress == PullOptions::Progress::BAR) opt.log("\n");
      opt.log(label + ": " + last_error + "; resuming at " + human_bytes(d.offset) + "\n");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250 << std::min(attempt - 1, 4)));
  }
  return make_error(ErrorCode::UNAVAILABLE, url, ": ", last_error, " after ", opt.max_attempts,
                    " attempts (run realm pull again to resume)");
}

// The repository's files with the sha256 of each LFS file.
Expected<std::vector<RepoFile>> list_repo(Curl& curl, const std::string& endpoint, const Spec& spec,
                                          const std::string& token) {
  const std::string url = endpoint + "/api/models/" + spec.repo +
                          (spec.revision == "main" ? "" : "/revision/" + spec.revision) +
                          "?blobs=true";
  std::string body;
  curl.setup(url, token);
  curl_easy_setopt(curl.h, CURLOPT_WRITEFUNCTION, to_string);
  curl_easy_setopt(curl.h, CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(curl.h);
  if (rc != CURLE_OK) {
    return make_error(ErrorCode::UNAVAILABLE, "cannot list ", spec.repo, " at ", endpoint, ": ",
                      curl_easy_strerror(rc));
  }
  const long status = curl.status();
  if (status == 404) {
    return make_error(ErrorCode::NOT_FOUND, "the repository '", spec.repo, "'",
                      spec.revision == "main" ? "" : " (revision " + spec.revision + ")",
                      " does not exist on ", endpoint);
  }
  if (status != 200) return make_error(http_error(status, "listing " + spec.repo, !token.empty()));
  Json j = Json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("siblings") || !j["siblings"].is_array()) {
    return make_error("the listing of ", spec.repo, " is not the hub's JSON (no siblings)");
  }
  std::vector<RepoFile> files;
  for (const Json& s : j["siblings"]) {
    if (!s.is_object() || !s.contains("rfilename") || !s["rfilename"].is_string()) continue;
    RepoFile f;
    f.path = s["rfilename"];
    if (s.contains("size") && s["size"].is_number_unsigned()) f.size = s["size"];
    if (s.contains("lfs") && s["lfs"].is_object()) {
      const Json& l = s["lfs"];
      std::string sha = l.value("sha256", std::string());
      if (sha.empty()) sha = l.value("oid", std::string());
      if (sha.rfind("sha256:", 0) == 0) sha = sha.substr(7);
      if (is_sha256(sha)) f.sha256 = sha;
      if (l.contains("size") && l["size"].is_number_unsigned()) f.size = l["size"];
    }
    // A path that would leave the entry directory is not a file we store.
    if (f.path.empty() || f.path.find("..") != std::string::npos || f.path[0] == '/') continue;
    files.push_back(std::move(f));
  }
  return files;
}

std::string url_escape_path(const std::string& p) {
  std::string out;
  for (unsigned char c : p) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '/' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", c);
      out += b;
    }
  }
  return out;
}

std::string random_suffix() {
  std::random_device rd;
  char b[17];
  std::snprintf(b, sizeof b, "%08x%08x", rd(), rd());
  return b;
}

Status fsync_path(const std::string& p, bool dir) {
  const int fd = ::open(p.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return make_error("cannot open ", p, ": ", std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return make_error("cannot sync ", p, ": ", std::strerror(errno));
  return {};
}

}  // namespace

Expected<PullResult> pull(std::string_view spec_text, const PullOptions& opt) {
  auto spec = parse_spec(spec_text);
  if (!spec) return spec.take_error();
  if (!opt.revision.empty() && spec->kind != Spec::Kind::URL) spec->revision = opt.revision;
  PullResult res;
  res.name = spec->name();
  res.dir = entry_dir(res.name);
  if (auto e = find_model(res.name)) {
    res.already = true;
    res.dir = e->dir;
    res.bytes = e->bytes;
    for (const Json& f : e->manifest["files"]) res.files.push_back(f.value("path", ""));
    return res;
  }
  static const bool curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!curl_ready) return make_error(ErrorCode::INTERNAL, "libcurl cannot be initialized");
  std::string endpoint = opt.endpoint;
  if (endpoint.empty()) {
    const char* e = std::getenv("HF_ENDPOINT");
    endpoint = e != nullptr && *e != '\0' ? e : "https://huggingface.co";
  }
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  std::string token = opt.token;
  if (token.empty()) {
    if (const char* t = std::getenv("HF_TOKEN"); t != nullptr) token = t;
  }
  Curl curl;
  if (!curl.h) return make_error(ErrorCode::INTERNAL, "libcurl cannot be initialized");

  // What to fetch: (url, file name in the entry, size, sha256).
  struct Want {
    std::string url, path;
    uint64_t size = 0;
    std::string sha256;
  };
  std::vector<Want> wants;
  Json source;
  if (spec->kind == Spec::Kind::URL) {
    const std::string file = fs::path(spec->url.substr(0, spec->url.find('?'))).filename();
    wants.push_back({spec->url, file.empty() ? "model.gguf" : file, 0, ""});
    source = {{"url", spec->url}};
  } else {
    auto files = list_repo(curl, endpoint, *spec, token);
    if (!files) return files.take_error();
    Expected<std::vector<RepoFile>> picked = std::vector<RepoFile>{};
    if (spec->kind == Spec::Kind::REPO) {
      picked = pick_quant(*files, spec->quant, spec->repo);
    } else {
      auto it = std::find_if(files->begin(), files->end(),
                             [&](const RepoFile& f) { return f.path == spec->file; });
      if (it == files->end()) {
        return make_error(ErrorCode::NOT_FOUND, "the repository '", spec->repo, "' has no file '",
                          spec->file, "'");
      }
      picked = with_shards(*files, *it);
    }
    if (!picked) return picked.take_error();
    for (const RepoFile& f : *picked) {
      wants.push_back({endpoint + "/" + spec->repo + "/resolve/" + spec->revision + "/" +
                           url_escape_path(f.path),
                       fs::path(f.path).filename().string(), f.size, f.sha256});
    }
    source = {{"endpoint", endpoint}, {"repo", spec->repo}, {"revision", spec->revision}};
  }

  // Downloads go to $REALM_HOME/downloads/<entry>/ (kept between runs for resuming).
  const fs::path dl = fs::path(realm_home()) / "downloads" / fs::path(res.dir).filename();
  std::error_code ec;
  fs::create_directories(dl, ec);
  if (ec) return make_error("cannot create ", dl.string(), ": ", ec.message());
  Json manifest_files = Json::array();
  std::vector<std::string> partials;
  for (size_t i = 0; i < wants.size(); ++i) {
    const Want& w = wants[i];
    const std::string partial = (dl / (w.path + ".partial")).string();
    const std::string label = wants.size() > 1 ? w.path + " (" + std::to_string(i + 1) + "/" +
                                                     std::to_string(wants.size()) + ")"
                                               : w.path;
    auto got = fetch(curl, w.url, partial, w.size, label, opt, token);
    if (!got) return got.take_error();
    const uint64_t size = fs::file_size(partial, ec);
    if (ec) return make_error("cannot read ", partial, ": ", ec.message());
    if (w.size > 0 && size != w.size) {
      fs::remove(partial, ec);
      return make_error(w.path, ": got ", size, " bytes, the repository lists ", w.size);
    }
    std::string want_sha = w.sha256.empty() ? got->sha256_header : w.sha256;
    auto sha = sha256_file(partial);
    if (!sha) return sha.take_error();
    if (!want_sha.empty() && *sha != want_sha) {
      fs::remove(partial, ec);
      return make_error(w.path, ": sha256 ", *sha, " differs from the published ", want_sha,
                        "; the download was removed");
    }
    if (want_sha.empty()) {
      res.verified = false;
      if (opt.log) opt.log(w.path + ": no sha256 published; only its GGUF structure is checked\n");
    }
    // The reader's checks before the file enters the store.
    auto g = gguf::GgufFile::open(partial);
    if (!g) {
      fs::remove(partial, ec);
      return make_error(w.path, " is not a valid GGUF file (", g.error().message,
                        "); the download was removed");
    }
    partials.push_back(partial);
    manifest_files.push_back({{"path", w.path}, {"size", size}, {"sha256", *sha}});
    res.bytes += size;
    res.files.push_back(w.path);
  }

  // The entry: every file moved into a temporary directory with the manifest, synced, renamed.
  fs::create_directories(models_dir(), ec);
  const fs::path tmp = fs::path(models_dir()) / (".tmp-" + random_suffix());
  fs::create_directories(tmp, ec);
  if (ec) return make_error("cannot create ", tmp.string(), ": ", ec.message());
  auto abandon = [&](Error e) -> Expected<PullResult> {
    // Files go back to downloads/ (a later pull resumes from them, verified again).
    for (size_t i = 0; i < partials.size(); ++i) {
      std::error_code ig;
      fs::rename(tmp / res.files[i], partials[i], ig);
    }
    std::error_code ig;
    fs::remove_all(tmp, ig);
    return e;
  };
  for (size_t i = 0; i < partials.size(); ++i) {
    fs::rename(partials[i], tmp / res.files[i], ec);
    if (ec) return abandon(make_error("cannot move ", partials[i], ": ", ec.message()));
  }
  if (partials.size() > 1) {  // a split model: the set must open as one
    auto set = gguf::open_split((tmp / res.files[0]).string());
    if (!set) {
      return abandon(make_error("the shards do not form one model: ", set.error().message));
    }
  }
  const Json manifest = {{"name", res.name},
                         {"spec", std::string(spec_text)},
                         {"source", source},
                         {"files", manifest_files},
                         {"pulled_at", static_cast<int64_t>(std::time(nullptr))}};
  {
    std::ofstream m(tmp / "manifest.json");
    m << manifest.dump(2) << "\n";
    m.close();
    if (!m) {
      return abandon(make_error(ErrorCode::LIMIT, "cannot write the manifest in ", tmp.string(),
                                " (disk full?)"));
    }
  }
  for (const std::string& f : res.files) {
    if (auto st = fsync_path((tmp / f).string(), false); !st) return abandon(st.error());
  }
  if (auto st = fsync_path((tmp / "manifest.json").string(), false); !st) {
    return abandon(st.error());
  }
  fs::rename(tmp, res.dir, ec);
  if (ec) {
    if (find_model(res.name)) {  // another pull of the same model won the race
      std::error_code ig;
      fs::remove_all(tmp, ig);
      res.already = true;
      return res;
    }
    return abandon(make_error("cannot create ", res.dir, ": ", ec.message()));
  }
  (void)fsync_path(models_dir(), true);
  fs::remove(dl, ec);  // empty now
  return res;
}

}  // namespace realm::hub
