#include "policy/engine.h"

#include <algorithm>
#include <array>
#include <limits>
#include <utility>

namespace fmp::policy {
namespace {

constexpr std::uint32_t bit(IndexField f) {
  return 1U << static_cast<unsigned>(f);
}

/// Entry descriptions in a Bundle denial quote client-controlled text: keep them short.
constexpr std::size_t kMaxQuotedPath = 200;

std::string describe_entry(std::size_t index, const FhirRequest& entry) {
  std::string path = entry.path;
  if (path.size() > kMaxQuotedPath) {
    path.resize(kMaxQuotedPath);
    path += "...";
  }
  return "entry " + std::to_string(index) + " (" + entry.method + " " + path + ")";
}

}  // namespace

/// A lazy k-way merge of ascending rule-index lists, without duplicates. Small k lives on the
/// stack.
class Engine::Candidates {
 public:
  void add(const std::vector<std::uint32_t>& list) {
    if (list.empty()) return;
    const Cursor c{list.data(), list.data() + list.size()};
    if (big_.empty() && count_ < small_.size()) {
      small_[count_++] = c;
      return;
    }
    if (big_.empty()) big_.assign(small_.begin(), small_.begin() + count_);
    big_.resize(count_);
    big_.push_back(c);
    ++count_;
  }

  /// The next rule index in ascending order; false when every list is exhausted.
  bool next(std::uint32_t& out) {
    Cursor* cs = big_.empty() ? small_.data() : big_.data();
    if (count_ == 0) return false;
    std::uint32_t best = std::numeric_limits<std::uint32_t>::max();
    for (std::size_t i = 0; i < count_; ++i) best = std::min(best, *cs[i].it);
    for (std::size_t i = 0; i < count_;) {
      if (*cs[i].it == best && ++cs[i].it == cs[i].end) {
        cs[i] = cs[--count_];
        continue;
      }
      ++i;
    }
    out = best;
    return true;
  }

 private:
  struct Cursor {
    const std::uint32_t* it;
    const std::uint32_t* end;
  };
  std::array<Cursor, 16> small_{};
  std::vector<Cursor> big_;
  std::size_t count_ = 0;
};

std::size_t Engine::KeyHash::operator()(const KeyView& k) const {
  std::size_t h = std::hash<std::string_view>{}(k.value);
  h ^= std::hash<std::string_view>{}(k.attr) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h ^= static_cast<std::size_t>(k.field) * 0x100000001b3ULL;
  return h;
}

Engine::Engine(std::vector<Rule> rules, Effect default_effect, HipaaConfig hipaa)
    : rules_(std::move(rules)), default_(default_effect), hipaa_(std::move(hipaa)) {
  names_.reserve(rules_.size());
  for (const auto& r : rules_) names_.push_back(r.name);
  build_index();
}

void Engine::build_index() {
  // Pass 1: every key each rule could be filed under, and how many rules share each value or
  // prefix.
  std::vector<std::vector<IndexKeys>> keys(rules_.size());
  std::unordered_map<Key, std::size_t, KeyHash, KeyEq> exact_popularity;
  std::unordered_map<Key, std::size_t, KeyHash, KeyEq> prefix_popularity;
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    rules_[i].when.index_keys(keys[i]);
    for (const auto& k : keys[i]) {
      for (const auto& v : k.values) ++exact_popularity[Key{k.field, k.attr, v}];
      for (const auto& v : k.prefixes) ++prefix_popularity[Key{k.field, k.attr, v}];
    }
  }
  // Pass 2: file each rule under its cheapest key (fewest rules sharing its values); ties go to the
  // earlier IndexField, ordered from the usually most selective.
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const IndexKeys* best = nullptr;
    std::size_t best_cost = 0;
    for (const auto& k : keys[i]) {
      std::size_t cost = 0;
      for (const auto& v : k.values)
        cost += exact_popularity.find(KeyView{k.field, k.attr, v})->second;
      for (const auto& v : k.prefixes)
        cost += prefix_popularity.find(KeyView{k.field, k.attr, v})->second;
      if (best == nullptr || cost < best_cost || (cost == best_cost && k.field < best->field)) {
        best = &k;
        best_cost = cost;
      }
    }
    const auto index = static_cast<std::uint32_t>(i);
    if (best == nullptr) {
      always_.push_back(index);
      continue;
    }
    used_fields_ |= bit(best->field);
    for (const auto& v : best->values) exact_[Key{best->field, best->attr, v}].push_back(index);
    auto& lengths = prefix_lengths_[static_cast<std::size_t>(best->field)];
    for (const auto& v : best->prefixes) {
      prefix_[Key{best->field, best->attr, v}].push_back(index);
      if (std::find(lengths.begin(), lengths.end(), v.size()) == lengths.end())
        lengths.push_back(v.size());
    }
  }
  for (auto& lengths : prefix_lengths_) std::sort(lengths.begin(), lengths.end());
}

/// prepare()'s result: the identity's index hits, and what recognises the identity they were
/// computed for.
class Engine::Prepared final : public PreparedIdentity {
 public:
  const Engine* engine = nullptr;
  Identity key;  ///< the fields compared by same_identity()
  std::vector<const std::vector<std::uint32_t>*> hits;
};

namespace {

bool same_dn(const DistinguishedName& a, const DistinguishedName& b) {
  if (a.attributes.size() != b.attributes.size()) return false;
  for (std::size_t i = 0; i < a.attributes.size(); ++i)
    if (a.attributes[i].type != b.attributes[i].type ||
        a.attributes[i].value != b.attributes[i].value)
      return false;
  return true;
}

/// True when `a` and `b` have the same values for every field the index looks up. A certificate
/// identity is recognised by its fingerprint (the SHA-256 of the DER its SANs and DNs were read
/// from) plus what depends on more than the certificate: the trust community and the HIPAA
/// categories (the policy's mapping); an identity without a fingerprint is compared field by field.
bool same_identity(const Identity& a, const Identity& b) {
  if (a.present != b.present) return false;
  if (!a.present) return true;  // anonymous: no identity lookups at all
  if (a.fingerprint_sha256 != b.fingerprint_sha256 || a.trust != b.trust || a.hipaa != b.hipaa ||
      a.cert_policies != b.cert_policies)
    return false;
  if (!a.fingerprint_sha256.empty()) return true;
  return a.san_uri == b.san_uri && a.san_dns == b.san_dns && a.san_email == b.san_email &&
         same_dn(a.subject, b.subject) && same_dn(a.issuer, b.issuer);
}

}  // namespace

template <typename Sink>
void Engine::lookup(IndexField f, std::string_view attr, std::string_view value,
                    Sink&& sink) const {
  if ((used_fields_ & bit(f)) == 0) return;
  const auto it = exact_.find(KeyView{f, attr, value});
  if (it != exact_.end()) sink(it->second);
  for (std::size_t len : prefix_lengths_[static_cast<std::size_t>(f)]) {
    if (len > value.size()) break;
    const auto p = prefix_.find(KeyView{f, attr, value.substr(0, len)});
    if (p != prefix_.end()) sink(p->second);
  }
}

template <typename Sink>
void Engine::collect_identity(const Identity& identity, Sink&& sink) const {
  if (!identity.present) return;
  lookup(IndexField::kFingerprint, {}, identity.fingerprint_sha256, sink);
  lookup(IndexField::kTrust, {}, identity.trust, sink);
  for (const auto& v : identity.san_uri) lookup(IndexField::kSanUri, {}, v, sink);
  for (const auto& v : identity.san_dns) lookup(IndexField::kSanDns, {}, v, sink);
  for (const auto& v : identity.san_email) lookup(IndexField::kSanEmail, {}, v, sink);
  for (const auto& v : identity.cert_policies) lookup(IndexField::kCertPolicy, {}, v, sink);
  for (const auto& v : identity.hipaa) lookup(IndexField::kHipaa, {}, v, sink);
  for (const auto& a : identity.subject.attributes)
    lookup(IndexField::kSubject, a.type, a.value, sink);
  for (const auto& a : identity.issuer.attributes)
    lookup(IndexField::kIssuer, a.type, a.value, sink);
}

void Engine::collect_request(const FhirRequest& request, Candidates& out) const {
  auto add = [&out](const std::vector<std::uint32_t>& list) { out.add(list); };
  lookup(IndexField::kMethod, {}, request.method, add);
  lookup(IndexField::kPath, {}, request.path, add);
  lookup(IndexField::kResource, {}, request.resource, add);
  lookup(IndexField::kOperation, {}, request.operation, add);
}

bool Engine::apply(std::uint32_t i, const Identity& identity, const FhirRequest& request,
                   Decision& d) const {
  const Rule& r = rules_[i];
  if (!r.when.matches(identity, request)) return false;
  if (r.mode == Mode::kShadow) {
    d.shadow.push_back(ShadowResult{r.name, r.effect});
    return false;
  }
  d.rule.assign(r.name);
  d.mode = Mode::kEnforce;
  // Appended piece by piece: a reused Decision keeps its storage (no allocation per request).
  d.reason.assign("rule \"").append(r.name).append("\" matched");
  d.effect = r.effect;  // last: an allocation failure above leaves evaluate_impl's denial
  return true;
}

void Engine::decide(const Identity& identity, const FhirRequest& request, bool indexed,
                    const Prepared* prepared, Decision& d) const {
  d.shadow.clear();
  if (indexed) {
    Candidates candidates;
    candidates.add(always_);
    if (prepared != nullptr) {
      for (const auto* list : prepared->hits) candidates.add(*list);
    } else {
      collect_identity(identity,
                       [&candidates](const std::vector<std::uint32_t>& l) { candidates.add(l); });
    }
    collect_request(request, candidates);
    std::uint32_t i = 0;
    while (candidates.next(i))
      if (apply(i, identity, request, d)) return;
  } else {
    for (std::uint32_t i = 0; i < rules_.size(); ++i)
      if (apply(i, identity, request, d)) return;
  }
  d.rule.assign("default");
  d.mode = Mode::kEnforce;
  d.reason.assign("no rule matched");
  d.effect = default_;  // last, as in apply()
}

void Engine::evaluate_impl(const Identity& identity, const FhirRequest& request, bool indexed,
                           const Prepared* prepared, Decision& d) const {
  d.effect = Effect::kDeny;  // whatever happens below, an exception leaves a denial
  if (!request.bundle_error.empty()) {
    d.effect = Effect::kDeny;
    d.rule.assign("default");
    d.mode = Mode::kEnforce;
    d.reason.assign("Bundle cannot be checked: ").append(request.bundle_error);
    d.shadow.clear();
    return;
  }
  decide(identity, request, indexed, prepared, d);
  const bool bundle = request.interaction == Interaction::kBatch ||
                      request.interaction == Interaction::kTransaction;
  if (!bundle || !d.allowed()) return;
  // Denied until every entry is allowed: an exception on the way leaves a denial in `d`.
  d.effect = Effect::kDeny;
  // Every entry has the same identity: its lookups are done once for the whole Bundle.
  std::shared_ptr<const PreparedIdentity> local;
  if (indexed && prepared == nullptr && !request.entries.empty()) {
    local = prepare(identity);
    prepared = static_cast<const Prepared*>(local.get());
  }
  Decision e;  // one for every entry: its storage is reused
  for (std::size_t n = 0; n < request.entries.size(); ++n) {
    const FhirRequest& entry = request.entries[n];
    evaluate_impl(identity, entry, indexed, prepared, e);
    if (e.allowed()) continue;
    d.effect = Effect::kDeny;
    d.mode = Mode::kEnforce;
    d.rule = std::move(e.rule);
    // 0-based, like Bundle.entry[n] and the classifier's bundle_error messages.
    std::string what = describe_entry(n, entry) + ": ";
    if (e.reason == "no rule matched")
      d.reason = what + "denied by default (no rule matched)";
    else if (e.reason == "rule \"" + d.rule + "\" matched")
      d.reason = what + "denied by rule \"" + d.rule + "\"";
    else
      d.reason = what + e.reason;  // the entry's own Bundle problem, nested
    return;
  }
  d.effect = Effect::kAllow;
}

Decision Engine::evaluate(const Identity& identity, const FhirRequest& request) const {
  Decision d;
  evaluate_impl(identity, request, true, nullptr, d);
  return d;
}

std::shared_ptr<const PreparedIdentity> Engine::prepare(const Identity& identity) const {
  auto p = std::make_shared<Prepared>();
  p->engine = this;
  p->key.present = identity.present;
  p->key.fingerprint_sha256 = identity.fingerprint_sha256;
  p->key.trust = identity.trust;
  p->key.hipaa = identity.hipaa;
  p->key.cert_policies = identity.cert_policies;
  if (identity.fingerprint_sha256.empty()) {
    p->key.san_uri = identity.san_uri;
    p->key.san_dns = identity.san_dns;
    p->key.san_email = identity.san_email;
    p->key.subject.attributes = identity.subject.attributes;
    p->key.issuer.attributes = identity.issuer.attributes;
  }
  collect_identity(identity, [&p](const std::vector<std::uint32_t>& l) { p->hits.push_back(&l); });
  return p;
}

const Engine::Prepared* Engine::usable(const PreparedIdentity* prepared,
                                       const Identity& identity) const {
  const auto* p = dynamic_cast<const Prepared*>(prepared);
  if (p == nullptr || p->engine != this || !same_identity(p->key, identity)) return nullptr;
  return p;
}

Decision Engine::evaluate(const Identity& identity, const FhirRequest& request,
                          const PreparedIdentity* prepared) const {
  Decision d;
  evaluate_impl(identity, request, true, usable(prepared, identity), d);
  return d;
}

void Engine::evaluate_into(const Identity& identity, const FhirRequest& request,
                           const PreparedIdentity* prepared, Decision& out) const {
  evaluate_impl(identity, request, true, usable(prepared, identity), out);
}

Decision Engine::evaluate_linear(const Identity& identity, const FhirRequest& request) const {
  Decision d;
  evaluate_impl(identity, request, false, nullptr, d);
  return d;
}

}  // namespace fmp::policy
