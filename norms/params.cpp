#include "norms/params.hpp"

#include <cmath>
#include <vector>

namespace normcheck {

ParamDef grid_param(std::string name, double min, double max, std::string meaning, int steps) {
  return {.name = std::move(name),
          .meaning = std::move(meaning),
          .fallback = min,
          .draw = [min, max, steps](int, const PickInt& pick) {
            return min + (max - min) * double(pick(0, steps - 1)) / double(steps - 1);
          }};
}

ParamDef log_uniform_param(std::string name, double min, double max, std::string meaning,
                           int steps) {
  return {.name = std::move(name),
          .meaning = std::move(meaning),
          .fallback = min,
          .draw = [min, max, steps](int, const PickInt& pick) {
            const double t = double(pick(0, steps - 1)) / double(steps - 1);
            return min * std::pow(max / min, t);
          }};
}

ParamDef eps_param() {
  return log_uniform_param("eps", 1e-12, 1e-2, "ε, added to the variance (log-uniform)");
}

ParamDef gain_param(std::string name, std::string meaning, double spread) {
  const int k = int(spread * 8);
  return {.name = std::move(name),
          .meaning = std::move(meaning),
          .fallback = 1.0,
          .draw = [k](int, const PickInt& pick) {
            // 0, 1, −1, 2, −2, …: shrinks towards a gain of exactly 1
            const int i = pick(0, 2 * k);
            return double(8 + (i % 2 ? (i + 1) / 2 : -(i / 2))) / 8.0;
          }};
}

ParamDef groups_param(std::string name, std::string meaning) {
  return {.name = std::move(name),
          .meaning = std::move(meaning),
          .fallback = 1.0,
          .whole = true,
          .draw = [](int D, const PickInt& pick) {
            std::vector<int> divisors;
            for (int g = 1; g <= D; ++g)
              if (D % g == 0 && (D / g >= 2 || D == 1)) divisors.push_back(g);
            return double(divisors[pick(0, int(divisors.size()) - 1)]);
          }};
}

}  // namespace normcheck
