#include "properties/coverage.hpp"

#include <set>

namespace normcheck::coverage {
namespace {

// One cell runs on one thread (the generators draw outside the kernels' OpenMP regions).
struct State {
  std::map<std::string, int> cell;
  std::set<std::string> this_case;
  bool counting = false;
};

State& state() {
  thread_local State s;
  return s;
}

}  // namespace

void start_cell() { state() = State{}; }

void start_case(bool counting) {
  state().this_case.clear();
  state().counting = counting;
}

void end_case() {
  State& s = state();
  if (s.counting)
    for (const auto& c : s.this_case) ++s.cell[c];
  s.this_case.clear();
  s.counting = false;
}

std::map<std::string, int> cell_counts() { return state().cell; }

void note(const std::string& cls) {
  if (state().counting) state().this_case.insert(cls);
}

}  // namespace normcheck::coverage
