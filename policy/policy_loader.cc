// Policy files (YAML) -> a compiled Engine.
//
// Validation choices beyond the contract (documented in the README's policy section):
// - `default` absent from every file means deny.
// - A scalar where a list is expected is a one-element list; an empty list or mapping is an error
//   ("matches nothing" is almost always a mistake); `when` may be absent, null or {} (matches all).
// - Globs must not be empty; `path` globs must start with '/' or a wildcard (a path always starts
// with
//   '/'); `fhir.operation` globs start with '$'; `fhir.resource` is letters/digits plus wildcards.
// - `method` is an uppercase token compared literally: `GET` does not match HEAD (list HEAD too).
// - `fingerprint_sha256` accepts 64 hex digits in either case, or colon-separated pairs as
//   `openssl x509 -fingerprint -sha256` prints them; both are normalised to lowercase without
//   colons.
// - `hipaa` names and `cert_policy` OIDs are literal; `fhir.interaction: none` is rejected (a fhir
// key
//   never matches a request outside FHIR).
// - Duplicate keys in one mapping and several YAML documents in one file are errors.
#include "policy/policy_loader.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "policy/engine.h"
#include "policy/rule.h"

namespace fmp::policy {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMaxQuoted = 120;

/// `"value"` with quotes, backslashes and control bytes escaped, long values shortened.
std::string quote(std::string_view s) {
  std::string out = "\"";
  const std::size_t n = std::min(s.size(), kMaxQuoted);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4U];
      out += kHex[c & 0xfU];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > n) out += "...";
  out += '"';
  return out;
}

std::string kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      return "a string";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

bool is_oid(std::string_view s) {
  int arcs = 0;
  std::size_t i = 0;
  while (i <= s.size()) {
    const std::size_t dot = std::min(s.find('.', i), s.size());
    const std::string_view arc = s.substr(i, dot - i);
    if (arc.empty() || arc.size() > 10) return false;
    if (arc.find_first_not_of("0123456789") != std::string_view::npos) return false;
    if (arc.size() > 1 && arc[0] == '0') return false;
    if (arcs == 0 && arc.size() == 1 && arc[0] > '2') return false;
    if (arcs == 0 && arc.size() > 1) return false;
    ++arcs;
    i = dot + 1;
  }
  return arcs >= 2;
}

bool all_of_chars(std::string_view s, bool (*ok)(char)) {
  return !s.empty() && std::all_of(s.begin(), s.end(), ok);
}
bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool is_upper(char c) {
  return c >= 'A' && c <= 'Z';
}
bool is_alpha(char c) {
  return is_upper(c) || (c >= 'a' && c <= 'z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool is_rule_name(std::string_view s) {
  return all_of_chars(
      s, [](char c) { return is_alpha(c) || is_digit(c) || c == '_' || c == '.' || c == '-'; });
}
bool is_category(std::string_view s) {
  return all_of_chars(s, [](char c) { return is_lower_alnum(c) || c == '-'; });
}
bool is_method(std::string_view s) {
  return !s.empty() && is_upper(s[0]) &&
         all_of_chars(s, [](char c) { return is_upper(c) || is_digit(c) || c == '-' || c == '_'; });
}
bool is_dn_attribute(std::string_view s) {
  if (is_oid(s)) return true;
  return !s.empty() && is_alpha(s[0]) &&
         all_of_chars(s, [](char c) { return is_alpha(c) || is_digit(c) || c == '-'; });
}
bool is_resource_glob(std::string_view s) {
  return all_of_chars(s, [](char c) { return is_alpha(c) || is_digit(c) || c == '*' || c == '?'; });
}

/// 64 hex digits, or 32 colon-separated pairs; normalised to lowercase without colons.
std::optional<std::string> normalise_fingerprint(std::string_view s) {
  std::string hex;
  if (s.size() == 64) {
    hex = s;
  } else if (s.size() == 95) {
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (i % 3 == 2) {
        if (s[i] != ':') return std::nullopt;
      } else {
        hex += s[i];
      }
    }
  } else {
    return std::nullopt;
  }
  for (char& c : hex) {
    if (!is_hex(c)) return std::nullopt;
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  return hex;
}

/// The interactions a rule may name, in the contract's order.
constexpr std::array<Interaction, 13> kRuleInteractions{
    Interaction::kRead,    Interaction::kVread,        Interaction::kSearch,
    Interaction::kHistory, Interaction::kCapabilities, Interaction::kCreate,
    Interaction::kUpdate,  Interaction::kPatch,        Interaction::kDelete,
    Interaction::kBatch,   Interaction::kTransaction,  Interaction::kOperation,
    Interaction::kUnknown};

std::string interaction_list() {
  std::string out;
  for (Interaction i : kRuleInteractions) {
    if (!out.empty()) out += ", ";
    out += to_string(i);
  }
  return out;
}

std::string join(std::initializer_list<std::string_view> words) {
  std::string out;
  for (auto w : words) {
    if (!out.empty()) out += ", ";
    out += w;
  }
  return out;
}

/// A validator returns the error message for a bad value, or nothing; it may rewrite the value.
using Validator = std::optional<std::string> (*)(std::string& value, std::string_view key);

std::optional<std::string> glob_value(std::string& v, std::string_view key) {
  if (v.empty())
    return "empty pattern in \"" + std::string(key) + "\" (it would match only an empty value)";
  return std::nullopt;
}
std::optional<std::string> path_value(std::string& v, std::string_view key) {
  if (auto e = glob_value(v, key)) return e;
  if (v[0] != '/' && v[0] != '*' && v[0] != '?')
    return "path pattern " + quote(v) + " must start with \"/\" (paths always do)";
  return std::nullopt;
}
std::optional<std::string> oid_value(std::string& v, std::string_view key) {
  if (!is_oid(v))
    return "bad OID " + quote(v) + " in " + std::string(key) +
           " (expected dotted numbers such as 1.3.6.1.4.1.41179.1.3)";
  return std::nullopt;
}
std::optional<std::string> category_value(std::string& v, std::string_view) {
  if (!is_category(v)) return "bad HIPAA category " + quote(v) + " (allowed: a-z 0-9 -)";
  return std::nullopt;
}
std::optional<std::string> fingerprint_value(std::string& v, std::string_view) {
  auto n = normalise_fingerprint(v);
  if (!n)
    return "bad fingerprint_sha256 " + quote(v) +
           " (expected 64 hex digits, optionally as colon-separated pairs)";
  v = *n;
  return std::nullopt;
}
std::optional<std::string> method_value(std::string& v, std::string_view) {
  if (!is_method(v))
    return "bad method " + quote(v) + " (expected an uppercase HTTP method such as GET)";
  return std::nullopt;
}
std::optional<std::string> resource_value(std::string& v, std::string_view) {
  if (!is_resource_glob(v))
    return "bad resource type " + quote(v) +
           " (expected a FHIR resource type such as Patient, or a glob)";
  return std::nullopt;
}
std::optional<std::string> operation_value(std::string& v, std::string_view) {
  if (v.size() < 2 || v[0] != '$')
    return "bad operation " + quote(v) + " (expected \"$name\", e.g. \"$everything\")";
  return std::nullopt;
}
std::optional<std::string> interaction_value(std::string& v, std::string_view) {
  Interaction i = Interaction::kNone;
  if (!parse_interaction(v, i) || i == Interaction::kNone)
    return "unknown interaction " + quote(v) + " (expected one of " + interaction_list() + ")";
  return std::nullopt;
}

/// One file being read: its name and the diagnostics found so far.
class FileReader {
 public:
  FileReader(std::string file, std::vector<Diagnostic>& diags)
      : file_(std::move(file)), diags_(diags) {}

  const std::string& file() const { return file_; }

  /// Where `n` is; a null value (`key:` with nothing after it) is placed at its key, not at the
  /// next token where yaml-cpp puts it.
  RuleSource where(const YAML::Node& n) const {
    YAML::Mark m = n.Mark();
    if (n.IsNull()) {
      for (const auto& [value, key] : null_values_)
        if (value.is(n)) m = key.Mark();
    }
    return RuleSource{file_, m.line >= 0 ? m.line + 1 : 1, m.column >= 0 ? m.column + 1 : 1};
  }
  void error(const YAML::Node& at, std::string message) { error(where(at), std::move(message)); }
  void error(const RuleSource& at, std::string message) {
    diags_.push_back(Diagnostic{at.file, at.line, at.column, std::move(message)});
  }

  /// The entries of a mapping with string keys, duplicates reported; nullopt (reported) on a bad
  /// shape.
  std::optional<std::vector<std::pair<YAML::Node, YAML::Node>>> entries(const YAML::Node& n,
                                                                        std::string_view what) {
    if (!n.IsMap()) {
      error(n, "expected a mapping for " + std::string(what) + ", got " + kind(n));
      return std::nullopt;
    }
    std::vector<std::pair<YAML::Node, YAML::Node>> out;
    std::set<std::string> seen;
    bool ok = true;
    for (auto it = n.begin(); it != n.end(); ++it) {
      const YAML::Node k = it->first;
      if (!k.IsScalar()) {
        error(k, "expected a string key in " + std::string(what) + ", got " + kind(k));
        ok = false;
        continue;
      }
      if (!seen.insert(k.Scalar()).second) {
        error(k, "duplicate key " + quote(k.Scalar()) + " in " + std::string(what));
        ok = false;
        continue;
      }
      if (it->second.IsNull()) null_values_.emplace_back(it->second, k);
      out.emplace_back(k, it->second);
    }
    if (!ok) return std::nullopt;
    if (out.empty()) {
      error(n, "empty mapping for " + std::string(what) + " (it would match nothing)");
      return std::nullopt;
    }
    return out;
  }

  std::optional<std::string> scalar(const YAML::Node& n, std::string_view key) {
    if (!n.IsScalar()) {
      error(n, "expected a string for \"" + std::string(key) + "\", got " + kind(n));
      return std::nullopt;
    }
    return n.Scalar();
  }

  /// A list of strings (a scalar is a one-element list), each checked by `check`.
  std::optional<std::vector<std::string>> strings(const YAML::Node& n, std::string_view key,
                                                  Validator check) {
    std::vector<YAML::Node> items;
    if (n.IsScalar()) {
      items.push_back(n);
    } else if (n.IsSequence()) {
      for (const auto& item : n) items.push_back(item);
      if (items.empty()) {
        error(n, "empty list for \"" + std::string(key) + "\" (it would match nothing)");
        return std::nullopt;
      }
    } else {
      error(n, "expected a string or a list of strings for \"" + std::string(key) + "\", got " +
                   kind(n));
      return std::nullopt;
    }
    std::vector<std::string> out;
    bool ok = true;
    for (const auto& item : items) {
      if (!item.IsScalar()) {
        error(item, "expected a string in \"" + std::string(key) + "\", got " + kind(item));
        ok = false;
        continue;
      }
      std::string v = item.Scalar();
      if (auto e = check(v, key)) {
        error(item, std::move(*e));
        ok = false;
        continue;
      }
      out.push_back(std::move(v));
    }
    if (!ok) return std::nullopt;
    return out;
  }

 private:
  std::string file_;
  std::vector<Diagnostic>& diags_;
  std::vector<std::pair<YAML::Node, YAML::Node>> null_values_;  ///< (null value, its key)
};

/// Accumulates files (in order) and compiles them into one Engine.
class Compiler {
 public:
  void add_text(const std::string& text, const std::string& file);
  void add_error(Diagnostic d) { diags_.push_back(std::move(d)); }

  PolicyPtr finish() {
    if (!diags_.empty()) throw ConfigError(std::move(diags_));
    return std::make_shared<const Engine>(std::move(rules_), default_.value_or(Effect::kDeny),
                                          std::move(hipaa_));
  }

 private:
  struct Located {
    std::string value;
    RuleSource source;
  };

  void top_level(FileReader& r, const YAML::Node& root);
  void read_default(FileReader& r, const YAML::Node& v);
  void read_categories(FileReader& r, const YAML::Node& v);
  void read_extensions(FileReader& r, const YAML::Node& v);
  void read_rule(FileReader& r, const YAML::Node& n);
  std::optional<AllOf> read_when(FileReader& r, const YAML::Node& n);
  std::unique_ptr<Matcher> read_dn(FileReader& r, const YAML::Node& v, std::string_view key,
                                   DistinguishedName Identity::*field, IndexField index);
  bool read_fhir(FileReader& r, const YAML::Node& v, std::vector<std::unique_ptr<Matcher>>& out);

  std::vector<Diagnostic> diags_;
  std::vector<Rule> rules_;
  std::unordered_map<std::string, RuleSource> names_;
  std::optional<Effect> default_;
  Located default_seen_;
  HipaaConfig hipaa_ = HipaaConfig::directtrust_defaults();
  std::map<std::string, Located> categories_seen_;  ///< OID -> name as set by a policy file
};

/// Records where each YAML document's first node starts; builds nothing.
class DocumentMarks final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> first_nodes;  ///< one per document that has a node

  void OnDocumentStart(const YAML::Mark&) override { seen_node_ = false; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& m) {
    if (!seen_node_) first_nodes.push_back(m);
    seen_node_ = true;
  }
  bool seen_node_ = false;
};

void Compiler::add_text(const std::string& text, const std::string& file) {
  FileReader r(file, diags_);
  YAML::Node root;
  try {
    // Not YAML::LoadAll: yaml-cpp 0.7 never returns from it on a stray ',' at the top level of a
    // document (",", "[a],"): the parser stops advancing and yields empty documents forever,
    // allocating each (found by tests/fuzz/policy_yaml). A policy file holds one document, so at
    // most two are looked at here, then the first is built.
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentMarks marks;
    int documents = 0;
    while (documents < 2 && parser.HandleNextDocument(marks)) ++documents;
    if (documents > 1) {
      const YAML::Mark m =
          marks.first_nodes.size() > 1 ? marks.first_nodes[1] : YAML::Mark::null_mark();
      const bool comma = m.pos >= 0 && static_cast<std::size_t>(m.pos) < text.size() &&
                         text[static_cast<std::size_t>(m.pos)] == ',';
      r.error(RuleSource{file, m.line >= 0 ? m.line + 1 : 1, m.column >= 0 ? m.column + 1 : 1},
              comma ? "YAML syntax error: unexpected ','"
                    : "more than one YAML document in a policy file");
      return;
    }
    if (documents == 1) root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    r.error(RuleSource{file, e.mark.line >= 0 ? e.mark.line + 1 : 1,
                       e.mark.column >= 0 ? e.mark.column + 1 : 1},
            "YAML syntax error: " + e.msg);
    return;
  }
  if (!root.IsDefined() || root.IsNull()) {
    r.error(RuleSource{file, 1, 1}, "empty policy file (expected a mapping with rules)");
    return;
  }
  top_level(r, root);
}

void Compiler::top_level(FileReader& r, const YAML::Node& root) {
  if (!root.IsMap()) {
    r.error(root, "expected a mapping at the top of a policy file, got " + kind(root));
    return;
  }
  auto entries = r.entries(root, "the policy file");
  if (!entries) return;
  for (const auto& [k, v] : *entries) {
    const std::string& key = k.Scalar();
    if (key == "default") {
      read_default(r, v);
    } else if (key == "hipaa_categories") {
      read_categories(r, v);
    } else if (key == "hipaa_extensions") {
      read_extensions(r, v);
    } else if (key == "rules") {
      if (!v.IsSequence()) {
        r.error(v, "expected a list for \"rules\", got " + kind(v));
      } else if (v.size() == 0) {
        r.error(v, "empty list for \"rules\" (omit the key instead)");
      } else {
        for (const auto& rule : v) read_rule(r, rule);
      }
    } else {
      r.error(k, "unknown key " + quote(key) + " (expected one of " +
                     join({"default", "hipaa_categories", "hipaa_extensions", "rules"}) + ")");
    }
  }
}

void Compiler::read_default(FileReader& r, const YAML::Node& v) {
  auto s = r.scalar(v, "default");
  if (!s) return;
  Effect e = Effect::kDeny;
  if (*s == "allow") {
    e = Effect::kAllow;
  } else if (*s != "deny") {
    r.error(v, "bad default " + quote(*s) + " (expected allow or deny)");
    return;
  }
  if (default_ && *default_ != e) {
    const RuleSource& first = default_seen_.source;
    r.error(v, "default " + quote(*s) + " conflicts with default " + quote(default_seen_.value) +
                   " set at " + first.file + ":" + std::to_string(first.line) + ":" +
                   std::to_string(first.column));
    return;
  }
  if (!default_) default_seen_ = Located{*s, r.where(v)};
  default_ = e;
}

void Compiler::read_categories(FileReader& r, const YAML::Node& v) {
  auto entries = r.entries(v, "\"hipaa_categories\"");
  if (!entries) return;
  for (const auto& [k, val] : *entries) {
    std::string oid = k.Scalar();
    if (auto e = oid_value(oid, "hipaa_categories")) {
      r.error(k, std::move(*e));
      continue;
    }
    auto name = r.scalar(val, "hipaa_categories");
    if (!name) continue;
    if (auto e = category_value(*name, "hipaa_categories")) {
      r.error(val, std::move(*e));
      continue;
    }
    const auto seen = categories_seen_.find(oid);
    if (seen != categories_seen_.end()) {
      if (seen->second.value != *name) {
        const RuleSource& first = seen->second.source;
        r.error(val, "hipaa_categories " + quote(oid) + " is " + quote(*name) + " here but " +
                         quote(seen->second.value) + " at " + first.file + ":" +
                         std::to_string(first.line) + ":" + std::to_string(first.column));
      }
      continue;
    }
    categories_seen_.emplace(oid, Located{*name, r.where(val)});
    hipaa_.categories[oid] = *name;
  }
}

void Compiler::read_extensions(FileReader& r, const YAML::Node& v) {
  auto oids = r.strings(v, "hipaa_extensions", oid_value);
  if (!oids) return;
  for (auto& oid : *oids)
    if (std::find(hipaa_.extensions.begin(), hipaa_.extensions.end(), oid) ==
        hipaa_.extensions.end())
      hipaa_.extensions.push_back(std::move(oid));
}

void Compiler::read_rule(FileReader& r, const YAML::Node& n) {
  if (!n.IsMap()) {
    r.error(n, "expected a mapping for a rule, got " + kind(n));
    return;
  }
  auto entries = r.entries(n, "a rule");
  if (!entries) return;
  Rule rule;
  rule.source = r.where(n);
  bool ok = true;
  bool has_name = false;
  bool has_effect = false;
  for (const auto& [k, v] : *entries) {
    const std::string& key = k.Scalar();
    if (key == "name") {
      auto s = r.scalar(v, "name");
      if (!s) {
        ok = false;
      } else if (!is_rule_name(*s)) {
        r.error(v, "bad rule name " + quote(*s) + " (allowed: A-Z a-z 0-9 _ . -)");
        ok = false;
      } else if (*s == "default") {
        r.error(v, "rule name \"default\" is reserved (it names the default decision)");
        ok = false;
      } else {
        const RuleSource at = r.where(v);
        const auto [it, inserted] = names_.emplace(*s, at);
        if (!inserted) {
          const RuleSource& first = it->second;
          r.error(at, "duplicate rule name " + quote(*s) + " (first defined at " + first.file +
                          ":" + std::to_string(first.line) + ":" + std::to_string(first.column) +
                          ")");
          ok = false;
        }
        rule.name = *s;
        has_name = true;
      }
    } else if (key == "effect") {
      auto s = r.scalar(v, "effect");
      if (s && (*s == "allow" || *s == "deny")) {
        rule.effect = *s == "allow" ? Effect::kAllow : Effect::kDeny;
        has_effect = true;
      } else {
        if (s) r.error(v, "bad effect " + quote(*s) + " (expected allow or deny)");
        ok = false;
        has_effect = true;  // reported already
      }
    } else if (key == "mode") {
      auto s = r.scalar(v, "mode");
      if (s && (*s == "enforce" || *s == "shadow")) {
        rule.mode = *s == "enforce" ? Mode::kEnforce : Mode::kShadow;
      } else {
        if (s) r.error(v, "bad mode " + quote(*s) + " (expected enforce or shadow)");
        ok = false;
      }
    } else if (key == "when") {
      if (v.IsNull()) continue;
      if (v.IsMap() && v.size() == 0) continue;
      auto when = read_when(r, v);
      if (when) {
        rule.when = std::move(*when);
      } else {
        ok = false;
      }
    } else {
      r.error(k, "unknown key " + quote(key) + " in a rule (expected one of " +
                     join({"name", "effect", "mode", "when"}) + ")");
      ok = false;
    }
  }
  if (!has_name) {
    r.error(n, "rule without \"name\"");
    ok = false;
  }
  if (!has_effect) {
    r.error(n, "rule " + (has_name ? quote(rule.name) + " " : std::string()) +
                   "without \"effect\" (allow or deny)");
    ok = false;
  }
  if (ok) rules_.push_back(std::move(rule));
}

std::unique_ptr<Matcher> Compiler::read_dn(FileReader& r, const YAML::Node& v, std::string_view key,
                                           DistinguishedName Identity::*field, IndexField index) {
  auto entries = r.entries(v, "\"" + std::string(key) + "\"");
  if (!entries) return nullptr;
  std::vector<DnMatcher::Attribute> attrs;
  bool ok = true;
  for (const auto& [k, val] : *entries) {
    const std::string& attr = k.Scalar();
    if (!is_dn_attribute(attr)) {
      r.error(k, "bad DN attribute " + quote(attr) + " in " + std::string(key) +
                     " (expected a short name such as CN, O, OU, or a dotted OID)");
      ok = false;
      continue;
    }
    auto globs = r.strings(val, std::string(key) + "." + attr, glob_value);
    if (!globs) {
      ok = false;
      continue;
    }
    attrs.push_back(DnMatcher::Attribute{attr, GlobSet(*globs)});
  }
  if (!ok) return nullptr;
  return std::make_unique<DnMatcher>(field, index, std::move(attrs));
}

bool Compiler::read_fhir(FileReader& r, const YAML::Node& v,
                         std::vector<std::unique_ptr<Matcher>>& out) {
  auto entries = r.entries(v, "\"fhir\"");
  if (!entries) return false;
  bool ok = true;
  for (const auto& [k, val] : *entries) {
    const std::string& key = k.Scalar();
    if (key == "resource") {
      auto s = r.strings(val, "resource", resource_value);
      if (s)
        out.push_back(std::make_unique<RequestStringMatcher>(
            &FhirRequest::resource, IndexField::kResource, true, GlobSet(*s)));
      ok = ok && s;
    } else if (key == "operation") {
      auto s = r.strings(val, "operation", operation_value);
      if (s)
        out.push_back(std::make_unique<RequestStringMatcher>(
            &FhirRequest::operation, IndexField::kOperation, true, GlobSet(*s)));
      ok = ok && s;
    } else if (key == "interaction") {
      auto s = r.strings(val, "interaction", interaction_value);
      if (s) {
        std::vector<Interaction> list;
        for (const auto& name : *s) {
          Interaction i = Interaction::kNone;
          parse_interaction(name, i);
          list.push_back(i);
        }
        out.push_back(std::make_unique<InteractionMatcher>(list));
      }
      ok = ok && s;
    } else {
      r.error(k, "unknown key " + quote(key) + " in fhir (expected one of " +
                     join({"resource", "interaction", "operation"}) + ")");
      ok = false;
    }
  }
  return ok;
}

std::optional<AllOf> Compiler::read_when(FileReader& r, const YAML::Node& n) {
  auto entries = r.entries(n, "\"when\"");
  if (!entries) return std::nullopt;
  // Matchers are added cheapest first (request fields, then identity); order never changes the
  // result.
  enum Slot {
    kMethod,
    kFhir,
    kTrust,
    kFingerprint,
    kSanUri,
    kSubject,
    kIssuer,
    kSanDns,
    kSanEmail,
    kHipaa,
    kCertPolicy,
    kPath,
    kSlots
  };
  std::array<std::vector<std::unique_ptr<Matcher>>, kSlots> slots;
  bool ok = true;
  auto identity_list = [&](const YAML::Node& v, std::string_view key, Slot slot,
                           std::vector<std::string> Identity::*field, IndexField index,
                           Validator check) {
    auto s = r.strings(v, key, check);
    if (s) slots[slot].push_back(std::make_unique<IdentityListMatcher>(field, index, GlobSet(*s)));
    ok = ok && s;
  };
  auto identity_string = [&](const YAML::Node& v, std::string_view key, Slot slot,
                             std::string Identity::*field, IndexField index, Validator check) {
    auto s = r.strings(v, key, check);
    if (s)
      slots[slot].push_back(std::make_unique<IdentityStringMatcher>(field, index, GlobSet(*s)));
    ok = ok && s;
  };
  auto request_string = [&](const YAML::Node& v, std::string_view key, Slot slot,
                            std::string FhirRequest::*field, IndexField index, Validator check) {
    auto s = r.strings(v, key, check);
    if (s)
      slots[slot].push_back(
          std::make_unique<RequestStringMatcher>(field, index, false, GlobSet(*s)));
    ok = ok && s;
  };
  auto dn = [&](const YAML::Node& v, std::string_view key, Slot slot,
                DistinguishedName Identity::*field, IndexField index) {
    auto m = read_dn(r, v, key, field, index);
    if (m) {
      slots[slot].push_back(std::move(m));
    } else {
      ok = false;
    }
  };
  for (const auto& [k, v] : *entries) {
    const std::string& key = k.Scalar();
    if (key == "trust") {
      identity_string(v, key, kTrust, &Identity::trust, IndexField::kTrust, glob_value);
    } else if (key == "subject") {
      dn(v, key, kSubject, &Identity::subject, IndexField::kSubject);
    } else if (key == "issuer") {
      dn(v, key, kIssuer, &Identity::issuer, IndexField::kIssuer);
    } else if (key == "san_uri") {
      identity_list(v, key, kSanUri, &Identity::san_uri, IndexField::kSanUri, glob_value);
    } else if (key == "san_dns") {
      identity_list(v, key, kSanDns, &Identity::san_dns, IndexField::kSanDns, glob_value);
    } else if (key == "san_email") {
      identity_list(v, key, kSanEmail, &Identity::san_email, IndexField::kSanEmail, glob_value);
    } else if (key == "hipaa") {
      identity_list(v, key, kHipaa, &Identity::hipaa, IndexField::kHipaa, category_value);
    } else if (key == "cert_policy") {
      identity_list(v, key, kCertPolicy, &Identity::cert_policies, IndexField::kCertPolicy,
                    oid_value);
    } else if (key == "fingerprint_sha256") {
      identity_string(v, key, kFingerprint, &Identity::fingerprint_sha256, IndexField::kFingerprint,
                      fingerprint_value);
    } else if (key == "method") {
      request_string(v, key, kMethod, &FhirRequest::method, IndexField::kMethod, method_value);
    } else if (key == "path") {
      request_string(v, key, kPath, &FhirRequest::path, IndexField::kPath, path_value);
    } else if (key == "fhir") {
      ok = read_fhir(r, v, slots[kFhir]) && ok;
    } else {
      r.error(k, "unknown key " + quote(key) + " in when (expected one of " +
                     join({"trust", "subject", "issuer", "san_uri", "san_dns", "san_email", "hipaa",
                           "cert_policy", "fingerprint_sha256", "method", "path", "fhir"}) +
                     ")");
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  AllOf all;
  for (auto& slot : slots)
    for (auto& m : slot) all.add(std::move(m));
  return all;
}

std::optional<std::string> read_file(const fs::path& p, std::string& error) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    error = "read error";
    return std::nullopt;
  }
  return ss.str();
}

bool is_policy_file_name(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;
  return name.ends_with(".yaml") || name.ends_with(".yml");
}

}  // namespace

PolicyPtr load_policy_text(const std::string& text, const std::string& name) {
  Compiler c;
  c.add_text(text, name);
  return c.finish();
}

PolicyPtr load_policy(const std::string& path) {
  Compiler c;
  std::error_code ec;
  const fs::path root(path);
  const fs::file_status st = fs::status(root, ec);  // follows symlinks
  if (ec || !fs::exists(st)) {
    throw ConfigError(Diagnostic{
        path, 1, 1,
        "cannot read policy: " + (ec ? ec.message() : std::string("no such file or directory"))});
  }
  std::vector<fs::path> files;
  if (fs::is_directory(st)) {
    for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (!is_policy_file_name(name)) continue;
      std::error_code dir_ec;
      if (fs::is_directory(it->path(), dir_ec)) continue;  // a directory named *.yaml
      files.push_back(it->path());
    }
    if (ec)
      throw ConfigError(Diagnostic{path, 1, 1, "cannot list policy directory: " + ec.message()});
    if (files.empty())
      throw ConfigError(Diagnostic{path, 1, 1, "no policy files (*.yaml, *.yml) in directory"});
    std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
      return a.filename().string() < b.filename().string();
    });
  } else {
    files.push_back(root);
  }
  for (const auto& f : files) {
    std::string error;
    const std::string shown = f.string();
    auto text = read_file(f, error);
    if (!text) {
      c.add_error(Diagnostic{shown, 1, 1, "cannot read policy file: " + error});
      continue;
    }
    c.add_text(*text, shown);
  }
  return c.finish();
}

}  // namespace fmp::policy
