// Usage rows of finished requests, written to the store in batches by a background thread so that
// a stream never waits for the database. A failed write (a locked or vanished database, a full
// disk) keeps the rows and retries; past `max_pending` rows the oldest are dropped and counted.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "server/store.h"

namespace realm::server {

class UsageLog {
 public:
  // `store` may be null: rows are then only counted.
  explicit UsageLog(Store* store, size_t max_pending = 100000);
  ~UsageLog();  // flushes (one last try) and stops
  UsageLog(const UsageLog&) = delete;
  UsageLog& operator=(const UsageLog&) = delete;

  void add(UsageRow row);  // never blocks on the database
  // Waits (up to `timeout`) until every row added so far is written; false if some are not.
  bool flush(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

  uint64_t written() const { return written_; }
  uint64_t dropped() const { return dropped_; }
  uint64_t write_errors() const { return write_errors_; }
  size_t pending() const;

 private:
  void loop();
  Store* store_;
  size_t max_pending_;
  mutable std::mutex mu_;
  std::condition_variable cv_, flushed_;
  std::deque<UsageRow> rows_;
  size_t in_flight_ = 0;  // rows taken by the writer, not yet written
  bool stop_ = false;
  std::atomic<uint64_t> written_{0}, dropped_{0}, write_errors_{0};
  std::thread thread_;
};

}  // namespace realm::server
