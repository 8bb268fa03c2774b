// Every mutant must be killed: ctest fails on a survivor, naming it.
#include <gtest/gtest.h>

#include "mutants/mutants.hpp"

namespace normcheck {
namespace {

class MutantIsKilled : public ::testing::TestWithParam<Mutant> {};

TEST_P(MutantIsKilled, BySomeCellOrGoldenCase) {
  const Mutant& m = GetParam();
  const MutantResult r = run_mutant(m, options_from_rc_params());
  ASSERT_TRUE(r.killed) << "mutant '" << m.id << "' (" << m.bug << ", imitating " << m.imitates
                        << ") survived every cell and golden case";
  std::cout << m.id << " killed by " << r.killed_by << "\n";
}

}  // namespace

void PrintTo(const Mutant& m, std::ostream* os) { *os << m.id; }

namespace {
INSTANTIATE_TEST_SUITE_P(Mutants, MutantIsKilled, ::testing::ValuesIn(mutants()),
                         [](const auto& info) { return info.param.id; });
}  // namespace
}  // namespace normcheck
