#include "attention/registry.hpp"

#include <stdexcept>

namespace normcheck {

const char* to_string(AttentionOp op) { return op == AttentionOp::sdpa ? "sdpa" : "mha"; }

namespace {

// The one list of attention rows. Adding a variant: a file with `AttentionEntry
// <name>_entry()`, then one line here.
std::deque<AttentionEntry>& registry() {
  static std::deque<AttentionEntry> all = {
      sdpa_entry(),
      mha_entry(),
  };
  return all;
}

}  // namespace

const std::deque<AttentionEntry>& attention_entries() { return registry(); }

const AttentionEntry& attention_entry(const std::string& name) {
  for (const auto& e : attention_entries())
    if (e.name == name) return e;
  throw std::invalid_argument("unknown attention row '" + name + "'");
}

void validate_attention_entry(const AttentionEntry& e) {
  if (e.name.empty()) throw std::invalid_argument("an attention entry needs a name");
  const bool ok = e.op == AttentionOp::sdpa
                      ? e.sdpa_reference && e.sdpa_optimized
                      : e.mha_reference && e.mha_optimized && e.decode_reference && e.decode_optimized;
  if (!ok)
    throw std::invalid_argument("attention entry '" + e.name + "' lacks the " + to_string(e.op) +
                                " functions (reference and optimized" +
                                (e.op == AttentionOp::mha ? ", and their decoding)" : ")"));
}

const AttentionEntry& register_attention(AttentionEntry entry) {
  validate_attention_entry(entry);
  for (const auto& e : registry())
    if (e.name == entry.name)
      throw std::invalid_argument("register_attention: an attention row named '" + entry.name + "' exists");
  if (entry.origin == "builtin") entry.origin = "external";
  registry().push_back(std::move(entry));
  return registry().back();
}

}  // namespace normcheck
