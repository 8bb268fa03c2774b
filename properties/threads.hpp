// Sets the OpenMP thread count for a scope and restores it after (n = 0: unchanged). The
// thread-determinism properties of every family run one side with each count.
#pragma once

#include <omp.h>

namespace normcheck {

class ThreadScope {
 public:
  explicit ThreadScope(int n) : prev_(omp_get_max_threads()), set_(n > 0) {
    if (set_) omp_set_num_threads(n);
  }
  ~ThreadScope() {
    if (set_) omp_set_num_threads(prev_);
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int prev_;
  bool set_;
};

}  // namespace normcheck
