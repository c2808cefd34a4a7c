#include "policy/glob.h"

#include <cstddef>
#include <utility>

namespace fmp::policy {
namespace {

bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0U) == 0x80U;
}

/// Index just past the code point starting at `i` (continuation bytes are skipped).
std::size_t next_code_point(std::string_view s, std::size_t i) {
  ++i;
  while (i < s.size() && is_continuation(s[i])) ++i;
  return i;
}

bool has_wildcard(std::string_view s) {
  return s.find_first_of("*?") != std::string_view::npos;
}

/// Classic single-backtrack glob matcher: on a mismatch, the last `*` absorbs one more code point.
bool match_general(std::string_view pat, std::string_view s) {
  std::size_t p = 0;
  std::size_t i = 0;
  std::size_t star_p = std::string_view::npos;
  std::size_t star_i = 0;
  while (i < s.size()) {
    if (p < pat.size() && pat[p] == '*') {
      while (p < pat.size() && pat[p] == '*') ++p;
      star_p = p;
      star_i = i;
    } else if (p < pat.size() && pat[p] == '?') {
      ++p;
      i = next_code_point(s, i);
    } else if (p < pat.size() && pat[p] == s[i]) {
      ++p;
      ++i;
    } else if (star_p != std::string_view::npos) {
      p = star_p;
      star_i = next_code_point(s, star_i);
      i = star_i;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

}  // namespace

Glob::Glob(std::string pattern) : pattern_(std::move(pattern)) {
  const std::string_view p = pattern_;
  if (!has_wildcard(p)) {
    shape_ = Shape::kLiteral;
    return;
  }
  if (p.find('?') == std::string_view::npos) {
    const std::size_t first = p.find('*');
    const std::size_t last = p.rfind('*');
    const std::string_view before = p.substr(0, first);
    const std::string_view after = p.substr(last + 1);
    const std::string_view between = p.substr(first, last - first + 1);
    const bool one_run = between.find_first_not_of('*') == std::string_view::npos;
    if (one_run && before.empty() && after.empty()) {
      shape_ = Shape::kAny;
      return;
    }
    if (one_run && after.empty()) {
      shape_ = Shape::kPrefix;
      core_ = before;
      return;
    }
    if (one_run && before.empty()) {
      shape_ = Shape::kSuffix;
      core_ = after;
      return;
    }
    if (before.empty() && after.empty()) {
      // "*infix*" with a single literal between the outer stars.
      const std::string_view inner = between.substr(1, between.size() - 2);
      const std::size_t inner_first = inner.find_first_not_of('*');
      const std::size_t inner_last = inner.find_last_not_of('*');
      const std::string_view infix = inner.substr(inner_first, inner_last - inner_first + 1);
      if (infix.find('*') == std::string_view::npos) {
        shape_ = Shape::kInfix;
        core_ = infix;
        return;
      }
    }
  }
  shape_ = Shape::kGeneral;
}

bool Glob::matches(std::string_view subject) const {
  switch (shape_) {
    case Shape::kLiteral:
      return subject == pattern_;
    case Shape::kAny:
      return true;
    case Shape::kPrefix:
      return subject.starts_with(core_);
    case Shape::kSuffix:
      return subject.ends_with(core_);
    case Shape::kInfix:
      return subject.find(core_) != std::string_view::npos;
    case Shape::kGeneral:
      return match_general(pattern_, subject);
  }
  return false;
}

}  // namespace fmp::policy
