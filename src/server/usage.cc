#include "server/usage.h"

#include <cstdio>
#include <vector>

namespace realm::server {

UsageLog::UsageLog(Store* store, size_t max_pending)
    : store_(store), max_pending_(max_pending), thread_([this] { loop(); }) {}

UsageLog::~UsageLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  thread_.join();
}

void UsageLog::add(UsageRow row) {
  std::lock_guard<std::mutex> lock(mu_);
  if (rows_.size() >= max_pending_) {
    rows_.pop_front();
    ++dropped_;
  }
  rows_.push_back(std::move(row));
  if (rows_.size() >= 256) cv_.notify_all();
}

size_t UsageLog::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rows_.size() + in_flight_;
}

bool UsageLog::flush(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.notify_all();
  return flushed_.wait_for(lock, timeout, [&] { return rows_.empty() && in_flight_ == 0; });
}

void UsageLog::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  bool failing = false;
  for (;;) {
    // Every 200 ms, at 256 rows or at a flush; after a failed write, wait 1 s before retrying.
    cv_.wait_for(lock, std::chrono::milliseconds(failing ? 1000 : 200));
    const bool last = stop_;
    if (rows_.empty()) {
      flushed_.notify_all();
      if (last) return;
      continue;
    }
    std::vector<UsageRow> batch(std::make_move_iterator(rows_.begin()),
                                std::make_move_iterator(rows_.end()));
    rows_.clear();
    in_flight_ = batch.size();
    lock.unlock();
    Status st = store_ ? store_->append_usage(batch) : Status{};
    lock.lock();
    in_flight_ = 0;
    if (st) {
      written_ += batch.size();
      if (failing) std::fprintf(stderr, "realm serve: usage rows are written again\n");
      failing = false;
    } else {
      ++write_errors_;
      if (!failing) {
        std::fprintf(stderr, "realm serve: cannot write %zu usage rows (kept, retrying): %s\n",
                     batch.size(), st.error().message.c_str());
      }
      failing = true;
      // Put them back in front, keeping the bound.
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) rows_.push_front(std::move(*it));
      while (rows_.size() > max_pending_) {
        rows_.pop_front();
        ++dropped_;
      }
      if (last) return;  // the destructor's one last try failed
    }
    flushed_.notify_all();
    if (last && rows_.empty()) return;
  }
}

}  // namespace realm::server
