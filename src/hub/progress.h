// Download progress on stderr: on a terminal one line redrawn with '\r' (bytes, percent, speed,
// ETA); otherwise a plain line every 10% (or every 5 s when the size is unknown).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace realm::hub {

class Progress {
 public:
  // quiet: print nothing. tty: as isatty(stderr) says, unless forced.
  Progress(std::string label, bool quiet);
  Progress(std::string label, bool quiet, bool tty);

  void update(uint64_t done, uint64_t total);
  // Ends the line (terminal) or prints the final line.
  void finish(uint64_t done);

 private:
  void draw(uint64_t done, uint64_t total, bool final);

  std::string label_;
  bool quiet_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
  uint64_t start_bytes_ = UINT64_MAX;  // bytes already there when the transfer started
  int last_decile_ = -1;
  bool drew_ = false;
};

// 1.5 MiB, 312 KiB, 17 B.
std::string format_bytes(uint64_t n);

}  // namespace realm::hub
