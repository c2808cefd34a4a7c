// Request-target splitting and path normalisation (the contract's "Paths" rules).
#include <string>
#include <string_view>

#include "policy/fhir_classify.h"

namespace fmp::policy {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_alnum(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// RFC 3986 unreserved: ALPHA DIGIT "-" "." "_" "~".
bool is_unreserved(unsigned char c) {
  return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

// RFC 3986 sub-delims.
bool is_sub_delim(unsigned char c) {
  switch (c) {
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
      return true;
    default:
      return false;
  }
}

// A byte allowed unescaped in an RFC 3986 path: pchar or '/'. '%' is handled separately.
bool is_raw_path_char(unsigned char c) {
  return is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@' || c == '/';
}

/// "." and "..", also with a path parameter (";x"): Tomcat, Jetty and others drop the parameter and
/// then resolve "..;" as "..", so "/fhir/metadata/..;/Patient/1" would reach Patient/1 upstream.
bool is_dot_segment(std::string_view segment) {
  segment = segment.substr(0, segment.find(';'));
  return segment == "." || segment == "..";
}

constexpr char kUpperHex[] = "0123456789ABCDEF";

// Normalises `raw` (a path without query) into `out`, checking every rule on the way.
PathError normalise_path(std::string_view raw, std::string& out) {
  out.reserve(raw.size());
  std::size_t segment_start = 0;  // index in `out` just after the last '/'
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const auto c = static_cast<unsigned char>(raw[i]);
    if (c == '/') {
      // A decoded '/' is refused below, so a '/' in `out` always comes from a raw '/'.
      if (!out.empty() && out.back() == '/') return PathError::kEmptySegment;
      if (is_dot_segment(std::string_view(out).substr(segment_start)))
        return PathError::kDotSegment;
      out.push_back('/');
      segment_start = out.size();
    } else if (c == '%') {
      if (i + 2 >= raw.size()) return PathError::kBadEncoding;
      const int hi = hex_value(raw[i + 1]);
      const int lo = hex_value(raw[i + 2]);
      if (hi < 0 || lo < 0) return PathError::kBadEncoding;
      const auto decoded = static_cast<unsigned char>(hi * 16 + lo);
      if (decoded == 0) return PathError::kNul;
      if (decoded == '/' || decoded == '\\') return PathError::kEncodedSlash;
      if (is_unreserved(decoded) || decoded == '$') {
        out.push_back(static_cast<char>(decoded));
      } else {
        out.push_back('%');
        out.push_back(kUpperHex[hi]);
        out.push_back(kUpperHex[lo]);
      }
      i += 2;
    } else if (c == 0) {
      return PathError::kNul;
    } else if (!is_raw_path_char(c)) {
      // '#', '\\', space, controls, DEL, non-ASCII, and the rest of what RFC 3986 excludes.
      return PathError::kBadCharacter;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (is_dot_segment(std::string_view(out).substr(segment_start))) return PathError::kDotSegment;
  return PathError::kOk;
}

}  // namespace

std::string_view to_string(PathError e) {
  switch (e) {
    case PathError::kOk:
      return "ok";
    case PathError::kDotSegment:
      return "dot segment in path";
    case PathError::kEncodedSlash:
      return "encoded slash or backslash in path";
    case PathError::kNul:
      return "NUL in path";
    case PathError::kEmptySegment:
      return "empty segment (//) in path";
    case PathError::kBadEncoding:
      return "bad percent-encoding in path";
    case PathError::kNotOriginForm:
      return "request target is not in origin form";
    case PathError::kBadCharacter:
      return "invalid character in path";
  }
  return "invalid path";
}

PathError split_target(std::string_view target, std::string& path, std::string& query) {
  path.clear();
  query.clear();
  if (target.empty() || target.front() != '/') return PathError::kNotOriginForm;
  const std::size_t q = target.find('?');
  const PathError err = normalise_path(target.substr(0, q), path);
  if (err != PathError::kOk) {
    path.clear();
    return err;
  }
  if (q != std::string_view::npos) query.assign(target.substr(q + 1));
  return PathError::kOk;
}

}  // namespace fmp::policy
