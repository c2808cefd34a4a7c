// Append-only compact JSON output into a caller's reused std::string, for the audit log's writer
// thread: no DOM, no per-field allocation once the buffer has grown. Output only: nothing here
// parses JSON.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace fmp::proxy::observability {

/// Appends the JSON string escaping of `s`, without the surrounding quotes: `"` and `\` escaped,
/// control characters below 0x20 as \b \f \n \r \t or \u00xx (lowercase hex), DEL and valid UTF-8
/// copied as they are. Invalid UTF-8 (stray continuation bytes, C0/C1/F5..FF, overlongs,
/// surrogates, code points above U+10FFFF, truncated sequences) never fails: each maximal
/// ill-formed subpart becomes one U+FFFD (EF BF BD), exactly as nlohmann::json's
/// error_handler_t::replace does, so the bytes written are those of the DOM-based dump. Runs of
/// bytes that need no change are appended in one piece.
void append_json_escaped(std::string& out, std::string_view s);

/// `"` + append_json_escaped(s) + `"`.
void append_json_string(std::string& out, std::string_view s);

/// Decimal integers (std::to_chars).
void append_json_uint(std::string& out, std::uint64_t v);
void append_json_int(std::string& out, std::int64_t v);

/// A JSON number that parses back to exactly `v` (shortest round-trip digits, std::to_chars),
/// always with a fraction or an exponent so readers see a float ("12.5", "3.0", "1e-07"), like
/// nlohmann::json prints doubles; digits may differ from nlohmann's in rare cases but never the
/// value. NaN and infinities, which JSON cannot carry, are written as 0.0.
void append_json_double(std::string& out, double v);

/// An object member's name: a string literal, checked when the program is compiled to need no
/// JSON escaping (printable ASCII without '"' or '\\', at most kMaxName bytes), so it is written
/// as it is. A name that would need escaping, or one that is not a string literal, does not
/// compile. The name is kept as it is written, `,"name":`, so a member name costs one append.
class JsonKey {
 public:
  static constexpr std::size_t kMaxName = 44;

  template <std::size_t N>
  consteval JsonKey(const char (&name)[N])  // NOLINT(google-explicit-constructor): literals
      : length_(N - 1 + 4) {
    if (name[N - 1] != '\0') throw "a JSON member name must be a string literal";
    if (N - 1 > kMaxName) throw "a JSON member name must be at most JsonKey::kMaxName bytes";
    written_[0] = ',';
    written_[1] = '"';
    for (std::size_t i = 0; i + 1 < N; ++i) {
      const auto u = static_cast<unsigned char>(name[i]);
      if (u < 0x20 || u >= 0x7f || name[i] == '"' || name[i] == '\\')
        throw "a JSON member name must be printable ASCII without quote or backslash";
      written_[2 + i] = name[i];
    }
    written_[N + 1] = '"';
    written_[N + 2] = ':';
  }
  /// The name alone.
  constexpr std::string_view text() const { return {written_.data() + 2, length_ - 4}; }
  /// `,"name":` (separated) or `"name":`.
  constexpr std::string_view written(bool separated) const {
    return separated ? std::string_view(written_.data(), length_)
                     : std::string_view(written_.data() + 1, length_ - 1);
  }

 private:
  std::array<char, kMaxName + 4> written_{};
  std::size_t length_;
};

/// Writes one compact JSON value (objects, arrays, scalars) into `out`, inserting the commas and
/// colons. The caller keeps the nesting balanced: every begin_* has its end_*, and inside an
/// object key() precedes each value. The writer only appends; `out` may already hold earlier
/// lines.
class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  JsonWriter& begin_object() { return open('{'); }
  JsonWriter& end_object() { return close('}'); }
  JsonWriter& begin_array() { return open('['); }
  JsonWriter& end_array() { return close(']'); }

  /// An object member's name; the next call writes its value.
  JsonWriter& key(const JsonKey& k) {
    out_ += k.written(!first_);
    first_ = true;  // the value follows the colon without a comma
    return *this;
  }

  JsonWriter& value(std::string_view s) {
    separate();
    append_json_string(out_, s);
    return *this;
  }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(std::uint64_t v) {
    separate();
    append_json_uint(out_, v);
    return *this;
  }
  JsonWriter& value(std::int64_t v) {
    separate();
    append_json_int(out_, v);
    return *this;
  }
  JsonWriter& value(int v) { return value(static_cast<std::int64_t>(v)); }
  JsonWriter& value(double v) {
    separate();
    append_json_double(out_, v);
    return *this;
  }
  JsonWriter& value(bool v) {
    separate();
    out_ += v ? "true" : "false";
    return *this;
  }

  /// One JSON string whose content is the parts one after another. Each part is escaped on its
  /// own, so an invalid UTF-8 tail of one part is not completed by the next part's first bytes:
  /// identical to escaping the concatenation whenever parts meet at ASCII characters.
  JsonWriter& value_concat(std::initializer_list<std::string_view> parts) {
    separate();
    out_ += '"';
    for (std::string_view p : parts) append_json_escaped(out_, p);
    out_ += '"';
    return *this;
  }

  /// Object members already written by a JsonWriter (`"k":v,...` with no surrounding braces),
  /// copied as they are; the caller vouches for them.
  JsonWriter& members(std::string_view serialized) {
    separate();
    out_ += serialized;
    return *this;
  }
  /// key(k) then value(v).
  template <typename T>
  JsonWriter& field(const JsonKey& k, const T& v) {
    return key(k).value(v);
  }

  /// An array of strings.
  template <typename Strings>
  JsonWriter& string_array(const Strings& items) {
    begin_array();
    for (const auto& s : items) value(std::string_view(s));
    return end_array();
  }

 private:
  JsonWriter& open(char bracket) {
    separate();
    out_ += bracket;
    first_ = true;
    return *this;
  }
  JsonWriter& close(char bracket) {
    out_ += bracket;
    first_ = false;
    return *this;
  }
  void separate() {
    if (!first_) out_ += ',';
    first_ = false;
  }

  std::string& out_;
  bool first_ = true;  ///< nothing written yet at this level (or a key was just written)
};

}  // namespace fmp::proxy::observability
