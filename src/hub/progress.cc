#include "hub/progress.h"

#include <unistd.h>

#include <cstdio>

namespace realm::hub {

std::string format_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

Progress::Progress(std::string label, bool quiet)
    : Progress(std::move(label), quiet, ::isatty(STDERR_FILENO) == 1) {}

Progress::Progress(std::string label, bool quiet, bool tty)
    : label_(std::move(label)),
      quiet_(quiet),
      tty_(tty),
      start_(std::chrono::steady_clock::now()) {}

void Progress::update(uint64_t done, uint64_t total) {
  if (quiet_) return;
  if (start_bytes_ == UINT64_MAX) start_bytes_ = done;
  auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (drew_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  } else if (total > 0) {
    int decile = static_cast<int>(done * 10 / total);
    if (decile == last_decile_ || decile >= 10) return;
    last_decile_ = decile;
  } else if (drew_ && now - last_draw_ < std::chrono::seconds(5)) {
    return;
  }
  last_draw_ = now;
  draw(done, total, false);
}

void Progress::finish(uint64_t done) {
  if (quiet_) return;
  if (start_bytes_ == UINT64_MAX) start_bytes_ = done;
  draw(done, done, true);
  if (tty_) std::fputc('\n', stderr);
  std::fflush(stderr);
}

void Progress::draw(uint64_t done, uint64_t total, bool final) {
  drew_ = true;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  uint64_t moved = done >= start_bytes_ ? done - start_bytes_ : 0;
  double speed = secs > 0.05 ? static_cast<double>(moved) / secs : 0;
  std::string line = label_ + "  " + format_bytes(done);
  if (total > 0) {
    line += " / " + format_bytes(total);
    char pct[16];
    std::snprintf(pct, sizeof pct, "  %3d%%", static_cast<int>(done * 100 / total));
    line += pct;
  }
  if (speed > 0) line += "  " + format_bytes(static_cast<uint64_t>(speed)) + "/s";
  if (!final && total > done && speed > 0) {
    double eta = static_cast<double>(total - done) / speed;
    char buf[32];
    if (eta >= 3600) {
      std::snprintf(buf, sizeof buf, "  ETA %dh%02dm", static_cast<int>(eta / 3600),
                    static_cast<int>(eta / 60) % 60);
    } else if (eta >= 60) {
      std::snprintf(buf, sizeof buf, "  ETA %dm%02ds", static_cast<int>(eta / 60),
                    static_cast<int>(eta) % 60);
    } else {
      std::snprintf(buf, sizeof buf, "  ETA %ds", static_cast<int>(eta + 0.5));
    }
    line += buf;
  }
  if (final) line += "  done";
  if (tty_) {
    std::fprintf(stderr, "\r%-78s", line.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace realm::hub
