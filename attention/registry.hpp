// The attention registry: one entry per attention row (a kernel beside its reference, with its
// expected profile). Every test, the CLI and the reports read this list. Adding an attention
// variant = one file defining `AttentionEntry <name>_entry()` + one line in registry.cpp (or
// `register_attention(entry)` at run time, as mutants/ and external libraries do).
#pragma once

#include <deque>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <normcheck/attention/mha.hpp>
#include <normcheck/attention/sdpa.hpp>

namespace normcheck {

// Which op an entry computes, and so which cases and properties its row takes.
enum class AttentionOp { sdpa, mha };
const char* to_string(AttentionOp op);

// softmax(q·kᵀ·scale + mask)·v (attention/sdpa.hpp's contract): out [B, H, Tq, dv], weights
// (when asked for) [B, H, Tq, Tk]; both widened to double.
using SdpaFn = std::function<void(Output& out, std::vector<double>* weights,
                                  const std::vector<float>& q, const std::vector<float>& k,
                                  const std::vector<float>& v, const SdpaShape& s,
                                  const SdpaMask& m, double scale)>;
// Multi-head attention (attention/mha.hpp's contract): out [B, Tq, E], weights [B, H, Tq, Tk].
using MhaFn = std::function<void(Output& out, std::vector<double>* weights, const MhaWeights& w,
                                 const std::vector<float>& query, const std::vector<float>& memory,
                                 int B, int Tq, int Tk, const SdpaMask& m)>;
// Incremental decoding of one sequence x [L, E] through a KV cache, fed in chunks whose sizes
// sum to L; out [L, E], the outputs of every token in order.
using MhaDecodeFn = std::function<void(Output& out, const MhaWeights& w,
                                       const std::vector<float>& x, const std::vector<int>& chunks)>;

struct AttentionEntry {
  std::string name;     // the row id: "sdpa", "mha"
  AttentionOp op = AttentionOp::sdpa;
  std::string formula = {};  // one line, for `normcheck list` and the reports
  // op sdpa
  SdpaFn sdpa_reference = {}, sdpa_optimized = {};
  // op mha
  MhaFn mha_reference = {}, mha_optimized = {};
  MhaDecodeFn decode_reference = {}, decode_optimized = {};
  // The expected profile: the properties that must be violated, and why. Every other
  // attention property must hold.
  std::set<std::string> violated = {};
  // Properties only the optimized implementation violates: an external library's defects, where
  // the reference (normcheck's own) keeps them. Explained in `why` too.
  std::set<std::string> optimized_violates = {};
  std::string why = {};
  std::string origin = "builtin";  // builtin | external | mutant
  // The golden op it computes: its own name unless it implements a built-in op differently.
  std::string computes = {};
  const std::string& golden_op() const { return computes.empty() ? name : computes; }
};

const std::deque<AttentionEntry>& attention_entries();
const AttentionEntry& attention_entry(const std::string& name);  // throws std::invalid_argument
// Adds an entry at run time; throws std::invalid_argument for a duplicate name or a missing
// function for its op.
const AttentionEntry& register_attention(AttentionEntry entry);

// Entries as the built-in kernels are: sdpa_reference / sdpa_optimized, mha_* and their KV-cache
// decoding (defined beside the kernels).
AttentionEntry sdpa_entry();
AttentionEntry mha_entry();
// Checks an entry the way register_attention does (a mutant's entry is not registered).
void validate_attention_entry(const AttentionEntry& e);

}  // namespace normcheck
