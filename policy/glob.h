// Glob patterns of the policy language, compiled once.
#pragma once

#include <string>
#include <string_view>

namespace fmp::policy {

/// A compiled glob. `*` matches any run of characters, including '/' and the empty run; `?` matches
/// exactly one character (one UTF-8 code point; a single byte of invalid UTF-8); every other
/// character is literal (there is no escape, no character class, and matching is case-sensitive).
///
/// Compiling classifies the pattern so the common shapes (literal, `prefix*`, `*suffix`, `*infix*`,
/// `*`) match with one comparison; other shapes use a linear-space backtracking matcher bounded by
/// O(pattern × subject).
class Glob {
 public:
  explicit Glob(std::string pattern);

  /// True when `subject` matches the whole pattern.
  bool matches(std::string_view subject) const;

  /// True when the pattern has no `*` or `?`: it matches exactly one string, itself.
  bool is_literal() const { return shape_ == Shape::kLiteral; }

  const std::string& pattern() const { return pattern_; }

  /// The characters before the first wildcard: every matching subject starts with them (for a
  /// literal, the whole pattern).
  std::string_view literal_prefix() const {
    return std::string_view(pattern_).substr(0, pattern_.find_first_of("*?"));
  }

 private:
  enum class Shape { kLiteral, kAny, kPrefix, kSuffix, kInfix, kGeneral };

  std::string pattern_;
  std::string core_;  ///< the literal part for kPrefix/kSuffix/kInfix
  Shape shape_ = Shape::kLiteral;
};

}  // namespace fmp::policy
