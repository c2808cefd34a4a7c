// The compiled Policy: rules in order, a default, an index that keeps evaluation sub-linear.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/policy.h"
#include "policy/rule.h"

namespace fmp::policy {

/// A compiled, immutable Policy (see policy.h for the semantics).
///
/// Indexing: at construction every rule is examined for `when` keys whose patterns are all literals
/// or globs with a literal prefix (fingerprint, san_uri "https://app/*", subject CN, trust, method,
/// ...). One such key per rule, the most selective across the whole policy, files the rule in a
/// hash map under each of its literals (exact map) and prefixes (prefix map); a rule without one
/// goes to the "always" list. Evaluation looks up the identity's and the request's values (exactly,
/// and by each prefix length in use for that field), merges the hit lists with the always list in
/// ascending rule order and walks only those candidates. A rule can only match when one of its
/// indexed values or prefixes is present, so the result is exactly the linear walk over all rules
/// (evaluate_linear, kept as the reference).
///
/// Bundles: a denied entry is reported as `entry N (METHOD PATH): denied by rule "X"` (or `denied
/// by default (no rule matched)`), N 0-based like Bundle.entry[N]; shadow results are the
/// Bundle-level ones.
class Engine final : public Policy {
 public:
  Engine(std::vector<Rule> rules, Effect default_effect, HipaaConfig hipaa);

  Decision evaluate(const Identity& identity, const FhirRequest& request) const override;
  /// The identity's index hits (the lookups of its fingerprint, trust, SANs, policies, HIPAA
  /// categories, subject and issuer), so that an evaluation only looks up the request's values.
  std::shared_ptr<const PreparedIdentity> prepare(const Identity& identity) const override;
  Decision evaluate(const Identity& identity, const FhirRequest& request,
                    const PreparedIdentity* prepared) const override;
  void evaluate_into(const Identity& identity, const FhirRequest& request,
                     const PreparedIdentity* prepared, Decision& out) const override;
  const std::vector<std::string>& rule_names() const override { return names_; }
  Effect default_effect() const override { return default_; }
  const HipaaConfig& hipaa() const override { return hipaa_; }

  /// The same decision as evaluate(), computed by walking every rule in order, without the index.
  /// The reference semantics: tests and benchmarks compare against it.
  Decision evaluate_linear(const Identity& identity, const FhirRequest& request) const;

  const std::vector<Rule>& rules() const { return rules_; }
  /// How many rules could not be indexed and are tried on every request.
  std::size_t unindexed_rule_count() const { return always_.size(); }

 private:
  struct Key {
    IndexField field;
    std::string attr;
    std::string value;
  };
  struct KeyView {
    IndexField field;
    std::string_view attr;
    std::string_view value;
  };
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(const KeyView& k) const;
    std::size_t operator()(const Key& k) const {
      return (*this)(KeyView{k.field, k.attr, k.value});
    }
  };
  struct KeyEq {
    using is_transparent = void;
    static KeyView view(const Key& k) { return {k.field, k.attr, k.value}; }
    static KeyView view(const KeyView& k) { return k; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      const KeyView x = view(a);
      const KeyView y = view(b);
      return x.field == y.field && x.attr == y.attr && x.value == y.value;
    }
  };
  class Candidates;
  class Prepared;

  void build_index();
  /// Calls `sink(list)` with every hit list of `value` for field `f` (exact and each prefix).
  template <typename Sink>
  void lookup(IndexField f, std::string_view attr, std::string_view value, Sink&& sink) const;
  /// The identity's lookups (none for an anonymous identity).
  template <typename Sink>
  void collect_identity(const Identity& identity, Sink&& sink) const;
  void collect_request(const FhirRequest& request, Candidates& out) const;
  /// `prepared`: this engine's preparation of `identity` (checked by the caller), or null.
  /// Writes every field of `d` (shadow results, rule, reason, effect, mode).
  void evaluate_impl(const Identity& identity, const FhirRequest& request, bool indexed,
                     const Prepared* prepared, Decision& d) const;
  void decide(const Identity& identity, const FhirRequest& request, bool indexed,
              const Prepared* prepared, Decision& d) const;
  /// `prepared` when it is this engine's preparation of `identity`, else null.
  const Prepared* usable(const PreparedIdentity* prepared, const Identity& identity) const;
  /// Applies rule `i` to the decision being built; true when the rule decided.
  bool apply(std::uint32_t i, const Identity& identity, const FhirRequest& request,
             Decision& d) const;

  std::vector<Rule> rules_;
  std::vector<std::string> names_;
  Effect default_;
  HipaaConfig hipaa_;
  using Index = std::unordered_map<Key, std::vector<std::uint32_t>, KeyHash, KeyEq>;
  Index exact_;
  Index prefix_;
  /// Per IndexField: the distinct prefix lengths in prefix_, ascending.
  std::array<std::vector<std::size_t>, kIndexFieldCount> prefix_lengths_;
  std::vector<std::uint32_t> always_;
  std::uint32_t used_fields_ = 0;  ///< bit per IndexField present in exact_ or prefix_
};

}  // namespace fmp::policy
