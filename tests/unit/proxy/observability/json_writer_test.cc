#include "proxy/observability/json_writer.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace obs = fmp::proxy::observability;
using nlohmann::json;

namespace {

std::string as_json_string(std::string_view s) {
  std::string out;
  obs::append_json_string(out, s);
  return out;
}

// The oracle: what the DOM-based serialiser wrote before (nlohmann, invalid UTF-8 replaced).
std::string nlohmann_dump(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

bool nlohmann_says_valid_utf8(const std::string& s) {
  try {
    (void)json(s).dump();  // strict: throws on invalid UTF-8
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

const std::string kFffd = "\xEF\xBF\xBD";

std::string double_text(double v) {
  std::string out;
  obs::append_json_double(out, v);
  return out;
}

}  // namespace

TEST_CASE("json string: every control character, quote and backslash is escaped") {
  const std::vector<std::string> expected = {
      "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
      "\\b",     "\\t",     "\\n",     "\\u000b", "\\f",     "\\r",     "\\u000e", "\\u000f",
      "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
      "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f"};
  for (int c = 0; c < 0x20; ++c) {
    const std::string in(1, static_cast<char>(c));
    CAPTURE(c);
    CHECK(as_json_string(in) == "\"" + expected[static_cast<std::size_t>(c)] + "\"");
    CHECK(as_json_string(in) == nlohmann_dump(in));
    CHECK(json::parse(as_json_string(in)).get<std::string>() == in);
  }
  CHECK(as_json_string("say \"hi\"") == R"("say \"hi\"")");
  CHECK(as_json_string("C:\\dir\\") == R"("C:\\dir\\")");
  CHECK(as_json_string("a/b\x7F") == "\"a/b\x7F\"");  // '/' and DEL need no escape
  CHECK(as_json_string("") == "\"\"");
  const std::string mixed = std::string("x\0y\"\\\n", 6) + "plain text";
  CHECK(as_json_string(mixed) == R"("x\u0000y\"\\\nplain text")");
  CHECK(json::parse(as_json_string(mixed)).get<std::string>() == mixed);
}

TEST_CASE("json string: valid UTF-8 of 2, 3 and 4 bytes is kept, boundaries included") {
  const char* valid[] = {
      "\xC2\x80",          // U+0080, smallest 2-byte
      "\xC3\xA9",          // é
      "\xDF\xBF",          // U+07FF
      "\xE0\xA0\x80",      // U+0800, smallest 3-byte
      "\xE2\x82\xAC",      // €
      "\xED\x9F\xBF",      // U+D7FF, just below the surrogates
      "\xEE\x80\x80",      // U+E000, just above
      "\xEF\xBF\xBF",      // U+FFFF
      "\xF0\x90\x80\x80",  // U+10000, smallest 4-byte
      "\xF0\x9F\x98\x80",  // 😀
      "\xF4\x8F\xBF\xBF",  // U+10FFFF, the last code point
  };
  for (const char* v : valid) {
    const std::string in = std::string("a") + v + "z";
    CAPTURE(in);
    CHECK(as_json_string(in) == "\"" + in + "\"");
    CHECK(json::parse(as_json_string(in)).get<std::string>() == in);
  }
}

TEST_CASE("json string: each class of invalid UTF-8 becomes U+FFFD, as nlohmann's replace did") {
  struct Case {
    std::string what;
    std::string in;
    std::string out;  // expected content between the quotes
  };
  const std::string f = kFffd;
  const Case cases[] = {
      {"stray continuation bytes",
       "a\x80\xBF"
       "b",
       "a" + f + f + "b"},
      {"C0/C1 leads (always overlong)", "\xC0\xAF\xC1\xBF", f + f + f + f},
      {"overlong 3-byte", "\xE0\x80\xAF", f + f + f},
      {"overlong 4-byte", "\xF0\x80\x80\xAF", f + f + f + f},
      {"UTF-16 surrogates", "\xED\xA0\x80\xED\xBF\xBF", f + f + f + f + f + f},
      {"above U+10FFFF from F4", "\xF4\x90\x80\x80", f + f + f + f},
      {"F5..FF leads", "\xF5\x80\xFE\xFF", f + f + f + f},
      {"truncated 2-byte at the end", "x\xC3", "x" + f},
      {"truncated 3-byte at the end", "x\xE2\x82", "x" + f},
      {"truncated 4-byte at the end", "x\xF0\x9F\x98", "x" + f},
      {"truncated sequence before ASCII", "\xE2\x82x", f + "x"},
      {"truncated sequence before a valid one", "\xF0\x9F\xC3\xA9", f + "\xC3\xA9"},
      {"truncated sequence before a quote", "\xE2\"", f + "\\\""},
      {"lead after lead", "\xC3\xC3\xA9", f + "\xC3\xA9"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    const std::string line = as_json_string(c.in);
    CHECK(line == "\"" + c.out + "\"");
    CHECK(line == nlohmann_dump(c.in));
    const std::string parsed = json::parse(line).get<std::string>();
    CHECK(nlohmann_says_valid_utf8(parsed));
    CHECK(parsed.find(kFffd) != std::string::npos);
  }
}

TEST_CASE("json string: a special byte is found at every offset of a long plain run") {
  // The scanner skips plain text eight bytes at a time: try each offset and word boundary.
  const std::string specials[] = {"\"", "\\", "\x1F", "\x01", "\x80", "\xC3\xA9", "\xE2\x82"};
  for (const auto& special : specials) {
    for (std::size_t at = 0; at <= 24; ++at) {
      std::string in(24, 'p');
      in.insert(at, special);
      CAPTURE(at);
      CHECK(as_json_string(in) == nlohmann_dump(in));
    }
  }
  CHECK(as_json_string(std::string(64, ' ')) == "\"" + std::string(64, ' ') + "\"");
}

TEST_CASE("json string: property test over pseudo-random byte strings") {
  std::mt19937 rng(20261123);
  // Fragments that make valid and invalid sequences likely; plain random bytes rarely form UTF-8.
  const std::vector<std::string> fragments = {"\xC3\xA9",
                                              "\xE2\x82\xAC",
                                              "\xF0\x9F\x98\x80",
                                              "\xF4\x8F\xBF\xBF",
                                              "\xED\xA0\x80",
                                              "\xE0\x80",
                                              "\xC0",
                                              "\x80",
                                              "\xFF",
                                              "\xF0\x9F",
                                              "\"",
                                              "\\",
                                              "\n",
                                              "\x01",
                                              "\x7F",
                                              "abc",
                                              "/",
                                              "?"};
  int valid_inputs = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string in;
    const auto length = rng() % 24;
    const auto mode = rng() % 3;
    for (std::uint32_t k = 0; k < length; ++k) {
      const bool fragment = mode == 1 || (mode == 2 && rng() % 2 == 0);
      if (fragment) {
        in += fragments[rng() % fragments.size()];
      } else {
        in += static_cast<char>(rng() % 256);
      }
    }
    CAPTURE(i);
    std::string line = "prefix ";  // appends: earlier content stays
    obs::append_json_string(line, in);
    REQUIRE(line.rfind("prefix ", 0) == 0);
    line.erase(0, 7);
    CHECK(line == nlohmann_dump(in));
    json parsed;
    REQUIRE_NOTHROW(parsed = json::parse(line));
    REQUIRE(parsed.is_string());
    if (nlohmann_says_valid_utf8(in)) {
      ++valid_inputs;
      CHECK(parsed.get<std::string>() == in);
    }
  }
  CHECK(valid_inputs > 200);  // the generator exercises both branches
  CHECK(valid_inputs < 3500);
}

TEST_CASE("json integers") {
  std::string out;
  obs::append_json_uint(out, 0);
  out += ',';
  obs::append_json_uint(out, std::numeric_limits<std::uint64_t>::max());
  out += ',';
  obs::append_json_int(out, -1);
  out += ',';
  obs::append_json_int(out, std::numeric_limits<std::int64_t>::min());
  CHECK(out == "0,18446744073709551615,-1,-9223372036854775808");
}

TEST_CASE("json double: a float that parses back to the same value; never NaN or Inf") {
  CHECK(double_text(12.5) == "12.5");
  CHECK(double_text(3.0) == "3.0");
  CHECK(double_text(0.0) == "0.0");
  CHECK(double_text(-0.0) == "-0.0");
  CHECK(double_text(0.001) == "0.001");
  CHECK(double_text(1e-7) == "1e-07");
  CHECK(double_text(1e20) == "1e+20");
  CHECK(double_text(123456.789) == "123456.789");
  CHECK(double_text(std::numeric_limits<double>::quiet_NaN()) == "0.0");
  CHECK(double_text(std::numeric_limits<double>::infinity()) == "0.0");
  CHECK(double_text(-std::numeric_limits<double>::infinity()) == "0.0");

  std::mt19937_64 rng(7);
  for (int i = 0; i < 5000; ++i) {
    double v = 0;
    if (i % 2 == 0) {
      const std::uint64_t bits = rng();
      std::memcpy(&v, &bits, sizeof v);  // any double, subnormals and huge ones included
      if (!std::isfinite(v)) continue;
    } else {
      v = static_cast<double>(rng() % 100000000000ULL) / 1e9 * 1000.0;  // durations in ms
    }
    const std::string text = double_text(v);
    CAPTURE(text);
    const json parsed = json::parse(text);
    REQUIRE(parsed.is_number_float());
    CHECK(parsed.get<double>() == v);
  }
}

TEST_CASE("JsonWriter: commas and colons at every nesting level") {
  std::string out = "x";
  obs::JsonWriter w(out);
  w.begin_object();
  w.field("a", std::uint64_t{1});
  w.key("b").begin_array();
  w.begin_object().end_object();
  w.begin_array().end_array();
  w.value("s").value(-2).value(true).value(false).value(0.5);
  w.end_array();
  w.key("c").begin_object().field("d", "e").field("f", std::string("g")).end_object();
  w.key("h").string_array(std::vector<std::string>{"i", "j"});
  w.key("k").string_array(std::vector<std::string>{});
  w.key("l").value_concat({"m", " \"n\" ", "\xC3"});
  w.end_object();
  CHECK(out ==
        "x{\"a\":1,\"b\":[{},[],\"s\",-2,true,false,0.5],\"c\":{\"d\":\"e\",\"f\":\"g\"},"
        "\"h\":[\"i\",\"j\"],\"k\":[],\"l\":\"m \\\"n\\\" " +
            kFffd + "\"}");
  CHECK(json::parse(out.substr(1)).is_object());
}

// A name is checked and laid out when the program is compiled; a name that needs escaping, is too
// long or is not a string literal does not compile, so only the layout can be tested here.
static_assert(obs::JsonKey("resourceType").text() == "resourceType");
static_assert(obs::JsonKey("a").written(false) == "\"a\":");
static_assert(obs::JsonKey("a").written(true) == ",\"a\":");
static_assert(obs::JsonKey("12345678901234567890123456789012345678901234").text().size() ==
              obs::JsonKey::kMaxName);

TEST_CASE("JsonWriter: a key after a member, after an opening bracket and after a key's value") {
  std::string out;
  obs::JsonWriter w(out);
  w.begin_object().key("first").begin_object().end_object().field("second", 2).end_object();
  CHECK(out == R"({"first":{},"second":2})");
}
