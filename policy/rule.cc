#include "policy/rule.h"

#include <algorithm>

namespace fmp::policy {
namespace {

/// Beyond this many literals a hash set beats a linear scan.
constexpr std::size_t kLinearLiteralLimit = 8;

}  // namespace

GlobSet::GlobSet(const std::vector<std::string>& patterns) {
  for (const auto& p : patterns) {
    Glob g(p);
    if (g.is_literal()) {
      if (std::find(literals_.begin(), literals_.end(), p) == literals_.end())
        literals_.push_back(p);
    } else {
      const std::string prefix(g.literal_prefix());
      if (prefix.empty()) indexable_ = false;
      if (std::find(prefixes_.begin(), prefixes_.end(), prefix) == prefixes_.end())
        prefixes_.push_back(prefix);
      globs_.push_back(std::move(g));
    }
  }
  if (literals_.size() > kLinearLiteralLimit)
    literal_set_.insert(literals_.begin(), literals_.end());
}

bool GlobSet::matches(std::string_view value) const {
  if (!literal_set_.empty()) {
    if (literal_set_.find(value) != literal_set_.end()) return true;
  } else {
    for (const auto& l : literals_)
      if (l == value) return true;
  }
  for (const auto& g : globs_)
    if (g.matches(value)) return true;
  return false;
}

bool GlobSet::matches_any(const std::vector<std::string>& values) const {
  for (const auto& v : values)
    if (matches(v)) return true;
  return false;
}

bool AllOf::matches(const Identity& identity, const FhirRequest& request) const {
  for (const auto& p : parts_)
    if (!p->matches(identity, request)) return false;
  return true;
}

void AllOf::index_keys(std::vector<IndexKeys>& out) const {
  for (const auto& p : parts_) p->index_keys(out);
}

bool IdentityStringMatcher::matches(const Identity& identity, const FhirRequest&) const {
  return identity.present && set_.matches(identity.*field_);
}

void IdentityStringMatcher::index_keys(std::vector<IndexKeys>& out) const {
  if (set_.indexable()) out.push_back({index_, {}, set_.literals(), set_.prefixes()});
}

bool IdentityListMatcher::matches(const Identity& identity, const FhirRequest&) const {
  return identity.present && set_.matches_any(identity.*field_);
}

void IdentityListMatcher::index_keys(std::vector<IndexKeys>& out) const {
  if (set_.indexable()) out.push_back({index_, {}, set_.literals(), set_.prefixes()});
}

bool DnMatcher::matches(const Identity& identity, const FhirRequest&) const {
  if (!identity.present) return false;
  const DistinguishedName& dn = identity.*field_;
  for (const auto& attr : attrs_) {
    bool found = false;
    for (const auto& a : dn.attributes) {
      if (a.type == attr.type && attr.set.matches(a.value)) {
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  return true;
}

void DnMatcher::index_keys(std::vector<IndexKeys>& out) const {
  for (const auto& attr : attrs_)
    if (attr.set.indexable())
      out.push_back({index_, attr.type, attr.set.literals(), attr.set.prefixes()});
}

bool RequestStringMatcher::matches(const Identity&, const FhirRequest& request) const {
  const std::string& value = request.*field_;
  if (fhir_only_ && (request.interaction == Interaction::kNone || value.empty())) return false;
  return set_.matches(value);
}

void RequestStringMatcher::index_keys(std::vector<IndexKeys>& out) const {
  if (set_.indexable()) out.push_back({index_, {}, set_.literals(), set_.prefixes()});
}

InteractionMatcher::InteractionMatcher(const std::vector<Interaction>& allowed) {
  for (Interaction i : allowed)
    if (i != Interaction::kNone) mask_ |= 1U << static_cast<unsigned>(i);
}

bool InteractionMatcher::matches(const Identity&, const FhirRequest& request) const {
  return request.interaction != Interaction::kNone &&
         (mask_ & (1U << static_cast<unsigned>(request.interaction))) != 0;
}

}  // namespace fmp::policy
