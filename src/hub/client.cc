#include "hub/client.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "hub/sha256.h"

namespace realm::hub {
namespace {

std::once_flag g_curl_once;

void ensure_curl() {
  std::call_once(g_curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// An ETag value as a sha256, if it is one: W/ and quotes stripped.
std::optional<std::string> etag_sha(std::string_view v) {
  std::string s = trim(v);
  if (s.rfind("W/", 0) == 0) s = s.substr(2);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  if (!is_sha256_hex(s)) return std::nullopt;
  return lower(s);
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  std::string t = trim(s);
  if (t.empty() || t.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : t) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// scheme://host[:port] of a URL, lower case.
std::string origin_of(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return lower(url);
  size_t host_end = url.find_first_of("/?#", scheme_end + 3);
  return lower(url.substr(0, host_end));
}

// What the header callback saw: the current (last) response's status and headers, and the hub's
// X-Linked-* headers from any response of the redirect chain.
struct Headers {
  long status = 0;
  std::optional<std::string> etag_sha;
  std::optional<std::string> linked_etag_sha;
  std::optional<uint64_t> linked_size;
  std::string content_range;
  std::optional<uint64_t> retry_after_s;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* h = static_cast<Headers*>(user);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    // A new response (after a redirect or a 100 Continue): forget the previous one's headers.
    size_t sp = line.find(' ');
    h->status =
        sp == std::string_view::npos ? 0 : std::atol(std::string(line.substr(sp + 1)).c_str());
    h->etag_sha.reset();
    h->content_range.clear();
    h->retry_after_s.reset();
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name = lower(trim(line.substr(0, colon)));
  std::string_view value = line.substr(colon + 1);
  if (name == "etag") {
    h->etag_sha = etag_sha(value);
  } else if (name == "x-linked-etag") {
    if (auto s = etag_sha(value)) h->linked_etag_sha = s;
  } else if (name == "x-linked-size") {
    if (auto v = parse_u64(value)) h->linked_size = v;
  } else if (name == "content-range") {
    h->content_range = trim(value);
  } else if (name == "retry-after") {
    h->retry_after_s = parse_u64(value);
  }
  return size * n;
}

struct CurlCall {
  CurlPtr handle;
  SlistPtr headers;
  char errbuf[CURL_ERROR_SIZE] = {};
  Headers seen;
};

Expected<std::unique_ptr<CurlCall>> new_call(const ClientOptions& o, const std::string& url,
                                             bool send_token) {
  ensure_curl();
  auto call = std::make_unique<CurlCall>();
  call->handle.reset(curl_easy_init());
  if (!call->handle) return make_error(ErrorCode::INTERNAL, "curl_easy_init failed");
  CURL* h = call->handle.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_USERAGENT, "realm/0.1");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, static_cast<long>(o.connect_timeout_s));
  // A stalled transfer (under 1 byte/s for stall_s) fails with CURLE_OPERATION_TIMEDOUT and is
  // retried like a cut connection.
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(o.stall_s));
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, call->errbuf);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &call->seen);
  if (send_token && !o.token.empty()) {
    // CURLOPT_UNRESTRICTED_AUTH stays off (the default): libcurl does not send the token to
    // another host (or port or scheme) after a redirect, so the CDN never sees it.
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BEARER));
    curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, o.token.c_str());
  }
  return call;
}

std::string curl_message(CURLcode code, const char* errbuf) {
  std::string m = errbuf && *errbuf ? errbuf : curl_easy_strerror(code);
  return m;
}

bool transient(CURLcode c) {
  switch (c) {
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

bool transient_status(long s) {
  return s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

// The "error" field of a hub JSON error body, or the body's start.
std::string body_message(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_string()) {
    return j["error"].get<std::string>();
  }
  std::string s = trim(body.substr(0, 200));
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

std::string auth_hint(const ClientOptions& o) {
  return o.token.empty()
             ? "; for a gated or private repo, accept its terms on the hub and set HF_TOKEN"
             : "; HF_TOKEN is set: check that it grants access to this repo";
}

size_t on_body_string(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<std::string*>(user);
  if (s->size() + size * n > (64u << 20)) return 0;  // a file list is never this big
  s->append(data, size * n);
  return size * n;
}

// State of one download attempt, for the write callback.
struct Sink {
  CURL* handle = nullptr;
  const Headers* headers = nullptr;
  int fd = -1;
  uint64_t offset = 0;  // bytes in the file
  uint64_t requested_from = 0;
  Sha256* hash = nullptr;
  bool started = false;
  bool writing = false;    // the response is the file (200/206), not an error body
  bool restarted = false;  // a 200 answered our range request: started over from 0
  bool bad_range = false;
  int write_errno = 0;
  std::string error_body;
  const ProgressFn* progress = nullptr;
  uint64_t total = 0;
};

// "bytes START-END/TOTAL" -> START (and TOTAL when given).
bool parse_content_range(std::string_view v, uint64_t& start, std::optional<uint64_t>& total) {
  if (v.rfind("bytes ", 0) != 0) return false;
  v.remove_prefix(6);
  size_t slash = v.find('/');
  if (slash == std::string_view::npos) return false;
  total = parse_u64(v.substr(slash + 1));
  std::string_view range = v.substr(0, slash);
  size_t dash = range.find('-');
  if (dash == std::string_view::npos) return false;
  auto s = parse_u64(range.substr(0, dash));
  if (!s) return false;
  start = *s;
  return true;
}

size_t on_body_file(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  const size_t len = size * n;
  if (!s->started) {
    s->started = true;
    long status = 0;
    curl_easy_getinfo(s->handle, CURLINFO_RESPONSE_CODE, &status);
    if (status == 206) {
      uint64_t start = 0;
      std::optional<uint64_t> total;
      if (!parse_content_range(s->headers->content_range, start, total) ||
          start != s->requested_from) {
        s->bad_range = true;
        return 0;
      }
      if (total) s->total = *total;
      s->writing = true;
    } else if (status == 200) {
      if (s->offset > 0) {
        // The server ignored the Range header: start over.
        if (::ftruncate(s->fd, 0) != 0 || ::lseek(s->fd, 0, SEEK_SET) != 0) {
          s->write_errno = errno;
          return 0;
        }
        s->offset = 0;
        s->hash->finish_hex();  // restarts the hash
        s->restarted = true;
      }
      curl_off_t cl = -1;
      curl_easy_getinfo(s->handle, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
      if (cl >= 0) s->total = static_cast<uint64_t>(cl);
      s->writing = true;
    }
  }
  if (!s->writing) {
    if (s->error_body.size() < 4096) s->error_body.append(data, std::min<size_t>(len, 4096));
    return len;
  }
  size_t done = 0;
  while (done < len) {
    ssize_t w = ::write(s->fd, data + done, len - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      s->write_errno = errno;
      return 0;
    }
    s->hash->update(data + done, static_cast<size_t>(w));
    done += static_cast<size_t>(w);
    s->offset += static_cast<uint64_t>(w);
  }
  if (s->progress && *s->progress) (*s->progress)(s->offset, s->total);
  return len;
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  return (end && *end == '\0' && x >= 0 && x < 1000000) ? static_cast<int>(x) : fallback;
}

uint64_t file_size_or_zero(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

bool is_disk_full(int e) {
  return e == ENOSPC || e == EDQUOT || e == EFBIG;
}

Error write_error(const std::string& path, int e, uint64_t written) {
  if (is_disk_full(e)) {
    return make_error(ErrorCode::LIMIT, "disk full: cannot write ", path, ": ", strerror(e), " (",
                      written, " bytes written; the partial file is kept: free space and run ",
                      "realm pull again to resume)");
  }
  return make_error(ErrorCode::INTERNAL, "cannot write ", path, ": ", strerror(e));
}

}  // namespace

std::string url_encode_path(std::string_view path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

HubClient::HubClient(ClientOptions options) : options_(std::move(options)) {
  while (!options_.endpoint.empty() && options_.endpoint.back() == '/')
    options_.endpoint.pop_back();
}

HubClient HubClient::from_env() {
  ClientOptions o;
  if (const char* e = std::getenv("HF_ENDPOINT"); e && *e) o.endpoint = e;
  if (const char* t = std::getenv("HF_TOKEN"); t && *t) o.token = t;
  o.max_retries = env_int("REALM_PULL_RETRIES", o.max_retries);
  o.backoff_ms = env_int("REALM_PULL_BACKOFF_MS", o.backoff_ms);
  o.stall_s = std::max(1, env_int("REALM_PULL_STALL_S", o.stall_s));
  return HubClient(std::move(o));
}

std::string HubClient::resolve_url(const std::string& repo, const std::string& revision,
                                   const std::string& path) const {
  return options_.endpoint + "/" + repo + "/resolve/" + url_encode_path(revision) + "/" +
         url_encode_path(path);
}

Expected<std::vector<HubFile>> HubClient::list_files(const std::string& repo,
                                                     const std::string& revision) const {
  std::string url = options_.endpoint + "/api/models/" + repo;
  if (revision != "main") url += "/revision/" + url_encode_path(revision);
  url += "?blobs=true";
  auto call = new_call(options_, url, true);
  if (!call) return call.take_error();
  std::string body;
  CURL* h = (*call)->handle.get();
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body_string);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    return make_error(ErrorCode::UNAVAILABLE, "cannot list repo ", repo, " at ", options_.endpoint,
                      ": ", curl_message(rc, (*call)->errbuf));
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (status == 401 || status == 403) {
    return make_error(ErrorCode::FAILED_PRECONDITION, "repo ", repo, " at ", options_.endpoint,
                      ": access denied (HTTP ", status, ": ", body_message(body),
                      "); check the name", auth_hint(options_));
  }
  if (status == 404) {
    return make_error(ErrorCode::NOT_FOUND, "repo ", repo,
                      revision == "main" ? "" : " at revision " + revision, " not found at ",
                      options_.endpoint, " (HTTP 404: ", body_message(body), ")");
  }
  if (status != 200) {
    return make_error(ErrorCode::UNAVAILABLE, "cannot list repo ", repo, ": HTTP ", status,
                      " from ", url, ": ", body_message(body));
  }
  auto j = nlohmann::json::parse(body, nullptr, false);
  // /api/models/{repo}: {siblings: [{rfilename, size, lfs: {sha256, size}}]}; the tree API
  // (/api/models/{repo}/tree/{rev}): [{type, path, size, lfs: {oid, size}}].
  const nlohmann::json* list = nullptr;
  if (j.is_object() && j.contains("siblings") && j["siblings"].is_array()) {
    list = &j["siblings"];
  } else if (j.is_array()) {
    list = &j;
  }
  if (!list) return make_error("bad file list from ", url, ": no 'siblings' array");
  std::vector<HubFile> files;
  for (const auto& e : *list) {
    if (!e.is_object()) continue;
    HubFile f;
    if (e.contains("rfilename") && e["rfilename"].is_string()) {
      f.path = e["rfilename"].get<std::string>();
    } else if (e.contains("path") && e["path"].is_string()) {
      if (e.contains("type") && e["type"] != "file") continue;
      f.path = e["path"].get<std::string>();
    } else {
      continue;
    }
    if (e.contains("size") && e["size"].is_number_unsigned()) f.size = e["size"].get<uint64_t>();
    if (e.contains("lfs") && e["lfs"].is_object()) {
      const auto& lfs = e["lfs"];
      for (const char* k : {"sha256", "oid"}) {
        if (lfs.contains(k) && lfs[k].is_string() && is_sha256_hex(lfs[k].get<std::string>())) {
          f.sha256 = lower(lfs[k].get<std::string>());
        }
      }
      if (lfs.contains("size") && lfs["size"].is_number_unsigned()) {
        f.size = lfs["size"].get<uint64_t>();
      }
    }
    files.push_back(std::move(f));
  }
  return files;
}

Expected<DownloadResult> HubClient::download(const DownloadRequest& req,
                                             const ProgressFn& progress) const {
  const ClientOptions& o = options_;
  const bool token_ok = req.send_token && origin_of(req.url) == origin_of(o.endpoint);
  DownloadResult result;
  std::optional<uint64_t> expected_size = req.expected_size;
  std::optional<std::string> published = req.expected_sha256;
  if (published) published = lower(*published);
  std::string last_problem;
  bool restarted_after_bad = false;
  int attempt = 0;
  Sha256 hash;
  auto backoff = [&] {
    int ms = std::min(8000, o.backoff_ms << std::min(attempt, 4));
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  };
  // Deletes the partial and says why (a wrong sha256 or size is never resumed).
  auto reject = [&](Error e) -> Error {
    ::unlink(req.partial_path.c_str());
    return e;
  };
  for (;; ++attempt) {
    uint64_t offset = file_size_or_zero(req.partial_path);
    if (expected_size && offset > *expected_size) {
      ::unlink(req.partial_path.c_str());
      offset = 0;
    }
    if (offset > 0) result.resumed = true;
    hash.finish_hex();  // start over
    if (offset > 0) {
      auto st = sha256_update_file(hash, req.partial_path, offset);
      if (!st) return st.take_error();
    }
    bool complete = expected_size && offset == *expected_size && offset > 0;
    if (!complete) {
      int fd = ::open(req.partial_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) return write_error(req.partial_path, errno, 0);
      if (::lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) {
        int e = errno;
        ::close(fd);
        return write_error(req.partial_path, e, offset);
      }
      auto call = new_call(o, req.url, token_ok);
      if (!call) {
        ::close(fd);
        return call.take_error();
      }
      CURL* h = (*call)->handle.get();
      Sink sink;
      sink.handle = h;
      sink.headers = &(*call)->seen;
      sink.fd = fd;
      sink.offset = offset;
      sink.requested_from = offset;
      sink.hash = &hash;
      sink.progress = &progress;
      sink.total = expected_size.value_or(0);
      curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body_file);
      curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
      std::string range = std::to_string(offset) + "-";
      if (offset > 0) curl_easy_setopt(h, CURLOPT_RANGE, range.c_str());
      CURLcode rc = curl_easy_perform(h);
      long status = 0;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
      const Headers& hd = (*call)->seen;
      if (!published) {
        if (hd.linked_etag_sha) {
          published = hd.linked_etag_sha;
        } else if (hd.etag_sha && (status == 200 || status == 206)) {
          published = hd.etag_sha;
        }
      }
      if (!expected_size && hd.linked_size) expected_size = hd.linked_size;
      if (!expected_size && sink.writing && sink.total > 0) expected_size = sink.total;
      int sync_errno = 0;
      if (sink.writing && ::fsync(fd) != 0) sync_errno = errno;
      if (::close(fd) != 0 && sync_errno == 0) sync_errno = errno;
      offset = sink.offset;
      if (sink.write_errno != 0) return write_error(req.partial_path, sink.write_errno, offset);
      if (sync_errno != 0 && is_disk_full(sync_errno)) {
        return write_error(req.partial_path, sync_errno, offset);
      }
      if (sink.bad_range) {
        // A 206 for other bytes than asked: do not trust the partial.
        ::unlink(req.partial_path.c_str());
        last_problem = "the server answered a range request with other bytes (Content-Range: " +
                       hd.content_range + ")";
        if (attempt >= o.max_retries) break;
        ++result.retries;
        continue;
      }
      if (rc != CURLE_OK) {
        last_problem = curl_message(rc, (*call)->errbuf);
        if (!transient(rc)) {
          return make_error(ErrorCode::UNAVAILABLE, "cannot download ", req.url, ": ",
                            last_problem);
        }
        if (attempt >= o.max_retries) break;
        ++result.retries;
        backoff();
        continue;
      }
      if (status == 416) {
        // Nothing after our offset: the partial is the whole file, or longer, or other bytes.
        uint64_t start = 0;
        std::optional<uint64_t> total;
        std::string cr = hd.content_range;
        if (cr.rfind("bytes */", 0) == 0) total = parse_u64(cr.substr(8));
        (void)start;
        if (total && !expected_size) expected_size = total;
        if (offset == 0 || (expected_size && offset != *expected_size)) {
          ::unlink(req.partial_path.c_str());
          last_problem = "HTTP 416 for a partial of " + std::to_string(offset) + " bytes";
          if (attempt >= o.max_retries) break;
          ++result.retries;
          continue;
        }
        complete = true;  // verified below
      } else if (status == 401 || status == 403) {
        return make_error(ErrorCode::FAILED_PRECONDITION, "cannot download ", req.url,
                          ": access denied (HTTP ", status, ": ", body_message(sink.error_body),
                          ")", auth_hint(o));
      } else if (status == 404) {
        return make_error(ErrorCode::NOT_FOUND, "cannot download ", req.url,
                          ": not found (HTTP 404",
                          sink.error_body.empty() ? "" : ": " + body_message(sink.error_body), ")");
      } else if (transient_status(status)) {
        last_problem = "HTTP " + std::to_string(status);
        if (attempt >= o.max_retries) break;
        ++result.retries;
        if (hd.retry_after_s && *hd.retry_after_s <= 30) {
          std::this_thread::sleep_for(std::chrono::seconds(*hd.retry_after_s));
        } else {
          backoff();
        }
        continue;
      } else if (status != 200 && status != 206) {
        return make_error(ErrorCode::UNAVAILABLE, "cannot download ", req.url, ": HTTP ", status,
                          sink.error_body.empty() ? "" : ": " + body_message(sink.error_body));
      } else if (expected_size && offset < *expected_size) {
        // The connection ended cleanly but early (no Content-Length to tell curl): resume.
        last_problem = "the connection closed after " + std::to_string(offset) + " of " +
                       std::to_string(*expected_size) + " bytes";
        if (attempt >= o.max_retries) break;
        ++result.retries;
        backoff();
        continue;
      }
      complete = true;
    }
    // Verify what is in the partial: the size and the sha256 (the hash covers every byte).
    result.size = offset;
    result.sha256 = hash.finish_hex();
    if (expected_size && result.size != *expected_size) {
      return reject(make_error("download of ", req.url, " has ", result.size, " bytes, expected ",
                               *expected_size, "; the partial file was deleted"));
    }
    if (published && result.sha256 != *published) {
      if (result.resumed && !restarted_after_bad) {
        // A partial from an earlier run may hold other bytes (the file changed upstream): one
        // fresh download before giving up.
        restarted_after_bad = true;
        ::unlink(req.partial_path.c_str());
        result.resumed = false;
        continue;
      }
      return reject(make_error("sha256 mismatch for ", req.url, ": got ", result.sha256,
                               ", published ", *published, "; the download was deleted"));
    }
    result.sha_known = published.has_value();
    return result;
  }
  return make_error(ErrorCode::UNAVAILABLE, "cannot download ", req.url, " after ", attempt + 1,
                    " tries: ", last_problem, " (", file_size_or_zero(req.partial_path),
                    " bytes kept in ", req.partial_path, "; run realm pull again to resume)");
}

}  // namespace realm::hub
