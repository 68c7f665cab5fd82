// `realm pull`: a GGUF model from the Hugging Face hub or a mirror into the store (docs/models.md).
// The hub's conventions: GET {endpoint}/api/models/{repo}?blobs=true lists the files with the
// sha256 of LFS files; GET {endpoint}/{repo}/resolve/{revision}/{file} downloads one, following
// redirects (to a CDN); HF_ENDPOINT names a mirror, HF_TOKEN is sent as a bearer token (to the
// endpoint's host only: libcurl drops a custom Authorization header on a redirect to another
// host). A download resumes with a Range request from what an earlier try left, is verified
// (size, sha256 when published) and read as GGUF before the entry appears.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "util/expected.h"

namespace realm::hub {

struct PullOptions {
  std::string endpoint;  // "": $HF_ENDPOINT, else https://huggingface.co
  std::string token;     // "": $HF_TOKEN
  std::string revision;  // "": the spec's (main)
  enum class Progress { NONE, LINES, BAR } progress = Progress::LINES;
  int max_attempts = 6;  // per file: a cut connection is resumed this many times
  std::function<void(const std::string&)> log;  // progress and notes (stderr); may be empty
};

struct PullResult {
  std::string name;  // the store name
  std::string dir;
  std::vector<std::string> files;
  uint64_t bytes = 0;
  bool already = false;  // the store had it: nothing was downloaded
  bool verified = true;  // sha256 checked for every file
};

Expected<PullResult> pull(std::string_view spec, const PullOptions& options);

// sha256 of a file, lower-case hex.
Expected<std::string> sha256_file(const std::string& path);

}  // namespace realm::hub
