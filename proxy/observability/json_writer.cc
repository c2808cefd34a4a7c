#include "proxy/observability/json_writer.h"

#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstring>

namespace fmp::proxy::observability {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool is_continuation(unsigned char c) {
  return (c & 0xC0) == 0x80;
}

// Length of the well-formed UTF-8 sequence (Unicode Table 3-7) starting at p[0] (a byte >= 0x80),
// or, when there is none, the negated length of its maximal ill-formed subpart (at least 1): the
// lead byte and the continuation bytes that could still have begun a valid sequence. The byte
// after a subpart is examined afresh.
int utf8_sequence(const unsigned char* p, std::size_t left) {
  const unsigned char c = p[0];
  int length = 0;
  unsigned char lo = 0x80;  // allowed range of the second byte
  unsigned char hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    length = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    length = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong below U+0800
    if (c == 0xED) hi = 0x9F;  // UTF-16 surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    length = 4;
    if (c == 0xF0) lo = 0x90;  // overlong below U+10000
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return -1;  // a stray continuation byte, C0/C1 (always overlong) or F5..FF
  }
  for (int k = 1; k < length; ++k) {
    if (static_cast<std::size_t>(k) >= left) return -k;  // truncated by the end of the string
    const unsigned char b = p[k];
    const bool ok = k == 1 ? (b >= lo && b <= hi) : is_continuation(b);
    if (!ok) return -k;
  }
  return length;
}

// 0: copied as is (printable ASCII other than '"' and '\'); 1: escaped; 2: starts a multi-byte
// sequence (valid or not).
constexpr std::array<unsigned char, 256> make_byte_classes() {
  std::array<unsigned char, 256> t{};
  for (int c = 0; c < 256; ++c) {
    if (c < 0x20 || c == '"' || c == '\\') {
      t[static_cast<std::size_t>(c)] = 1;
    } else if (c >= 0x80) {
      t[static_cast<std::size_t>(c)] = 2;
    }
  }
  return t;
}
constexpr std::array<unsigned char, 256> kByteClass = make_byte_classes();

// True when none of the 8 bytes in `x` needs attention: no byte >= 0x80, < 0x20, '"' or '\\'.
// Each test is the classic "has a byte below n" bit trick; it is exact as a yes/no answer.
bool word_is_plain(std::uint64_t x) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = kOnes * 0x80;
  const std::uint64_t quote = x ^ (kOnes * '"');
  const std::uint64_t backslash = x ^ (kOnes * '\\');
  const std::uint64_t below_space = (x - kOnes * 0x20) & ~x;
  const std::uint64_t is_quote = (quote - kOnes) & ~quote;
  const std::uint64_t is_backslash = (backslash - kOnes) & ~backslash;
  return ((x | below_space | is_quote | is_backslash) & kHigh) == 0;
}

void append_escape(std::string& out, unsigned char c) {
  switch (c) {
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    case '\b':
      out += "\\b";
      return;
    case '\f':
      out += "\\f";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    default: {
      constexpr std::string_view kHex = "0123456789abcdef";
      const char escaped[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
      out.append(escaped, sizeof escaped);
      return;
    }
  }
}

}  // namespace

void append_json_escaped(std::string& out, std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t run = 0;  // start of the bytes not yet appended, all of which need no change
  std::size_t i = 0;
  while (i < n) {
    // Plain text eight bytes at a time, then byte by byte from the first one that is not.
    while (n - i >= sizeof(std::uint64_t)) {
      std::uint64_t word;
      std::memcpy(&word, p + i, sizeof word);
      if (!word_is_plain(word)) break;
      i += sizeof word;
    }
    if (i >= n) break;
    if (n - i < sizeof(std::uint64_t)) {  // the tail, padded with spaces (plain) to one word
      std::uint64_t word = 0x2020202020202020ULL;
      std::memcpy(&word, p + i, n - i);
      if (word_is_plain(word)) break;
    }
    const unsigned char cls = kByteClass[p[i]];
    if (cls == 0) {
      ++i;
      continue;
    }
    if (cls == 2) {
      const int len = utf8_sequence(p + i, n - i);
      if (len > 0) {  // valid: stays in the run
        i += static_cast<std::size_t>(len);
        continue;
      }
      out.append(s.data() + run, i - run);
      out += kReplacement;
      i += static_cast<std::size_t>(-len);
      run = i;
      continue;
    }
    out.append(s.data() + run, i - run);
    append_escape(out, p[i]);
    ++i;
    run = i;
  }
  out.append(s.data() + run, n - run);
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  append_json_escaped(out, s);
  out += '"';
}

void append_json_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_json_int(std::string& out, std::int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_json_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "0.0";
    return;
  }
  // Plain notation for the magnitudes a duration has (at most 16 + 6 characters here), exponent
  // notation beyond, as nlohmann::json does; either way the shortest digits that round-trip.
  const double magnitude = std::fabs(v);
  const bool plain = v == 0 || (magnitude >= 1e-4 && magnitude < 1e15);
  char buf[40];
  const auto r = plain ? std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed)
                       : std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const std::string_view digits(buf, static_cast<std::size_t>(r.ptr - buf));
  out += digits;
  if (digits.find_first_of(".e") == std::string_view::npos) out += ".0";  // "3" -> "3.0"
}

}  // namespace fmp::proxy::observability
