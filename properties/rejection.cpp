#include "properties/rejection.hpp"

namespace normcheck {

Impl other(Impl impl) { return impl == Impl::reference ? Impl::optimized : Impl::reference; }

std::optional<Rejection> run_or_reject(Impl impl, const std::function<void(Impl)>& side) {
  try {
    side(impl);
    return std::nullopt;
  } catch (const InvalidInput& e) {
    const std::string message = e.what();
    try {
      side(other(impl));
    } catch (const InvalidInput&) {
      throw;  // both reject it: not an input of this layer, the case is discarded
    }
    return Rejection{impl, message};
  }
}

CaseOutcome rejected_outcome(const Rejection& r, const std::string& related_input,
                             nlohmann::json params, nlohmann::json input, nlohmann::json related,
                             nlohmann::json labels) {
  CaseOutcome o;
  const std::string accepts = to_string(other(r.rejected_by));
  o.rejection = std::string(to_string(r.rejected_by)) + " rejects an input the " + accepts +
                " accepts: " + r.message;
  o.summary = related_input + "; " + o.rejection;
  o.evidence = {{"related_input", related_input},
                {"params", std::move(params)},
                {"labels", std::move(labels)},
                {"input", std::move(input)},
                {"related", std::move(related)},
                {"compared", nlohmann::json::array()},
                {"compared_count", 0},
                {"mismatches", 0},
                {"rejected", {{"implementation", to_string(r.rejected_by)},
                              {"message", r.message},
                              {"accepted_by", accepts}}}};
  return o;
}

}  // namespace normcheck
