// The Hugging Face hub over HTTP (libcurl behind this plain header): a repo's file list and
// resumable, verified file downloads. HF_ENDPOINT picks a mirror (default https://huggingface.co);
// HF_TOKEN is sent as a bearer token to the endpoint's host only (libcurl's default,
// CURLOPT_UNRESTRICTED_AUTH off, drops it when a redirect leads to another host, e.g. the CDN).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "util/expected.h"

namespace realm::hub {

inline constexpr const char* kDefaultEndpoint = "https://huggingface.co";

// One file of a repo listing.
struct HubFile {
  std::string path;                   // rfilename: the path in the repo
  std::optional<uint64_t> size;       // lfs.size, else size
  std::optional<std::string> sha256;  // lfs.sha256 (LFS files only)
};

// Called as bytes arrive: (bytes of the file on disk so far, total or 0 when unknown).
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

struct DownloadRequest {
  std::string url;
  std::string partial_path;                    // written here; resumed from its size
  std::optional<uint64_t> expected_size;       // from the listing, when known
  std::optional<std::string> expected_sha256;  // from the listing, when known
  bool send_token = true;                      // HF_TOKEN to this URL's host
};

struct DownloadResult {
  uint64_t size = 0;
  std::string sha256;      // of the whole file, as computed
  bool sha_known = false;  // checked against a published sha256 (listing or X-Linked-Etag)
  bool resumed = false;    // continued from an earlier partial
  int retries = 0;         // cut connections recovered from
};

struct ClientOptions {
  std::string endpoint = kDefaultEndpoint;  // no trailing '/'
  std::string token;                        // "" : no Authorization
  int max_retries = 5;                      // per file, for cut connections and 5xx/429
  int backoff_ms = 500;                     // doubled per retry, at most 8 s
  int stall_s = 30;                         // abort (and retry) below 1 byte/s for this long
  int connect_timeout_s = 30;
};

class HubClient {
 public:
  explicit HubClient(ClientOptions options);
  // HF_ENDPOINT, HF_TOKEN; REALM_PULL_RETRIES, REALM_PULL_BACKOFF_MS, REALM_PULL_STALL_S.
  static HubClient from_env();

  const ClientOptions& options() const { return options_; }

  // GET {endpoint}/api/models/{repo}[/revision/{rev}]?blobs=true. Errors: NOT_FOUND for a missing
  // repo or revision, FAILED_PRECONDITION for 401/403 (gated or private: set HF_TOKEN),
  // UNAVAILABLE for network errors (with curl's message).
  Expected<std::vector<HubFile>> list_files(const std::string& repo,
                                            const std::string& revision) const;

  // {endpoint}/{repo}/resolve/{revision}/{path}, path parts percent-encoded.
  std::string resolve_url(const std::string& repo, const std::string& revision,
                          const std::string& path) const;

  // Downloads `req.url` (following redirects) into req.partial_path, resuming from its size with
  // a Range request (206 appends; 200 restarts from 0; 416 verifies what is there) and retrying
  // cut connections with backoff. The sha256 is computed over the whole file (a resumed prefix is
  // re-hashed) and checked against req.expected_sha256 or the X-Linked-Etag/ETag the server
  // publishes; on a mismatch or a wrong size the partial is deleted. Write errors (ENOSPC, EDQUOT,
  // EFBIG) are LIMIT errors naming the path; the partial is kept so a later pull resumes.
  Expected<DownloadResult> download(const DownloadRequest& req, const ProgressFn& progress) const;

 private:
  ClientOptions options_;
};

// Percent-encodes a path for a URL, keeping '/'.
std::string url_encode_path(std::string_view path);

}  // namespace realm::hub
