// Compiled rules of the policy language: matchers that compose with AND (AllOf) and any-of
// (GlobSet).
//
// Every matcher is immutable after construction and a pure function of (Identity, FhirRequest), so
// a compiled policy can be shared by all threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "policy/decision.h"
#include "policy/fhir_request.h"
#include "policy/glob.h"
#include "policy/identity.h"

namespace fmp::policy {

/// Hash for heterogeneous lookup of std::string keys with std::string_view.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

/// Any-of a list of globs: true when the value matches at least one. Literal patterns are compared
/// exactly (hashed when there are many), the rest are compiled globs.
class GlobSet {
 public:
  explicit GlobSet(const std::vector<std::string>& patterns);

  bool matches(std::string_view value) const;
  /// True when some value matches some pattern.
  bool matches_any(const std::vector<std::string>& values) const;

  /// The literal patterns: the set matches exactly these values, plus what the globs match.
  const std::vector<std::string>& literals() const { return literals_; }
  /// The literal prefixes of the glob patterns (deduplicated).
  const std::vector<std::string>& prefixes() const { return prefixes_; }
  /// True when every pattern is a literal or has a non-empty literal prefix: then every matching
  /// value equals one of literals() or starts with one of prefixes(), and an index can find the
  /// set.
  bool indexable() const { return indexable_; }

 private:
  std::vector<std::string> literals_;
  std::unordered_set<std::string, StringHash, std::equal_to<>>
      literal_set_;  ///< when many literals
  std::vector<Glob> globs_;
  std::vector<std::string> prefixes_;
  bool indexable_ = true;
};

/// The fields a rule can be indexed on (see Engine). Identity fields only ever match a present
/// identity.
enum class IndexField : std::uint8_t {
  kFingerprint,
  kSanUri,
  kSanDns,
  kSanEmail,
  kSubject,  ///< with an attribute type
  kIssuer,   ///< with an attribute type
  kTrust,
  kCertPolicy,
  kHipaa,
  kPath,
  kOperation,
  kResource,
  kMethod,
};
inline constexpr int kIndexFieldCount = 13;

/// What a matcher requires of one field: the rule can only match a request/identity that has, in
/// `field` (and, for DN fields, attribute `attr`), a value equal to one of `values` or starting
/// with one of `prefixes`.
struct IndexKeys {
  IndexField field = IndexField::kTrust;
  std::string attr;
  std::vector<std::string> values;
  std::vector<std::string> prefixes;
};

/// One condition of a rule's `when`.
class Matcher {
 public:
  virtual ~Matcher() = default;
  virtual bool matches(const Identity& identity, const FhirRequest& request) const = 0;
  /// Appends the exact-value keys this matcher requires, if it has any (all of its patterns
  /// literal).
  virtual void index_keys(std::vector<IndexKeys>& out) const = 0;
};

/// AND of matchers; an empty AllOf matches everything (a rule without `when`).
class AllOf final : public Matcher {
 public:
  void add(std::unique_ptr<Matcher> m) { parts_.push_back(std::move(m)); }
  bool empty() const { return parts_.empty(); }
  bool matches(const Identity& identity, const FhirRequest& request) const override;
  void index_keys(std::vector<IndexKeys>& out) const override;

 private:
  std::vector<std::unique_ptr<Matcher>> parts_;
};

/// A single-valued identity field (trust, fingerprint_sha256). Never matches an anonymous identity.
class IdentityStringMatcher final : public Matcher {
 public:
  IdentityStringMatcher(std::string Identity::*field, IndexField index, GlobSet set)
      : field_(field), index_(index), set_(std::move(set)) {}
  bool matches(const Identity& identity, const FhirRequest& request) const override;
  void index_keys(std::vector<IndexKeys>& out) const override;

 private:
  std::string Identity::*field_;
  IndexField index_;
  GlobSet set_;
};

/// A multi-valued identity field (san_uri, san_dns, san_email, hipaa, cert_policy): some value must
/// match some pattern. Never matches an anonymous identity.
class IdentityListMatcher final : public Matcher {
 public:
  IdentityListMatcher(std::vector<std::string> Identity::*field, IndexField index, GlobSet set)
      : field_(field), index_(index), set_(std::move(set)) {}
  bool matches(const Identity& identity, const FhirRequest& request) const override;
  void index_keys(std::vector<IndexKeys>& out) const override;

 private:
  std::vector<std::string> Identity::*field_;
  IndexField index_;
  GlobSet set_;
};

/// `subject` / `issuer`: for every listed attribute, some value of that attribute in the DN must
/// match some of its patterns; an attribute absent from the DN fails. Never matches an anonymous
/// identity.
class DnMatcher final : public Matcher {
 public:
  struct Attribute {
    std::string type;
    GlobSet set;
  };
  DnMatcher(DistinguishedName Identity::*field, IndexField index, std::vector<Attribute> attrs)
      : field_(field), index_(index), attrs_(std::move(attrs)) {}
  bool matches(const Identity& identity, const FhirRequest& request) const override;
  void index_keys(std::vector<IndexKeys>& out) const override;

 private:
  DistinguishedName Identity::*field_;
  IndexField index_;
  std::vector<Attribute> attrs_;
};

/// A request field (method, path, fhir.resource, fhir.operation). With `fhir_only`, a request
/// outside FHIR (Interaction::kNone) or with an empty field value fails.
class RequestStringMatcher final : public Matcher {
 public:
  RequestStringMatcher(std::string FhirRequest::*field, IndexField index, bool fhir_only,
                       GlobSet set)
      : field_(field), index_(index), fhir_only_(fhir_only), set_(std::move(set)) {}
  bool matches(const Identity& identity, const FhirRequest& request) const override;
  void index_keys(std::vector<IndexKeys>& out) const override;

 private:
  std::string FhirRequest::*field_;
  IndexField index_;
  bool fhir_only_;
  GlobSet set_;
};

/// `fhir.interaction`: the request's interaction is one of the listed ones (never kNone).
class InteractionMatcher final : public Matcher {
 public:
  explicit InteractionMatcher(const std::vector<Interaction>& allowed);
  bool matches(const Identity& identity, const FhirRequest& request) const override;
  void index_keys(std::vector<IndexKeys>&) const override {}

 private:
  std::uint32_t mask_ = 0;
};

/// Where a rule was defined, for explain and diagnostics.
struct RuleSource {
  std::string file;
  int line = 1;
  int column = 1;
};

/// One compiled rule.
struct Rule {
  std::string name;
  Effect effect = Effect::kDeny;
  Mode mode = Mode::kEnforce;
  AllOf when;  ///< empty: matches every request
  RuleSource source;
};

}  // namespace fmp::policy
