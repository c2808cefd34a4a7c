// Inspection of batch/transaction Bundles: every entry is classified so the policy can check it.
#include "policy/fhir_bundle.h"

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy/fhir_classify.h"

namespace fmp::policy {
namespace {

using nlohmann::json;

/// Deepest JSON nesting accepted. FHIR resources stay far below it; the bound keeps hostile input
/// ("[[[[...") from costing memory per level.
constexpr std::size_t kMaxJsonDepth = 128;

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

/// application/fhir+json or application/json, any letter case, parameters (charset, fhirVersion)
/// ignored.
bool is_json_media_type(std::string_view content_type) {
  const std::string_view media = trim(content_type.substr(0, content_type.find(';')));
  return iequals(media, "application/fhir+json") || iequals(media, "application/json");
}

/// Builds the DOM like nlohmann's own parser, but refuses duplicate object keys (parsers disagree
/// on which copy wins, so "type":"batch","type":"transaction" could mean one thing here and another
/// upstream) and nesting deeper than kMaxJsonDepth.
class StrictDomBuilder {
 public:
  explicit StrictDomBuilder(json& root) : dom_(root, false) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return dom_.number_float(v, s);
  }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) {
    if (!enter()) return false;
    keys_.emplace_back();
    return dom_.start_object(n);
  }
  bool key(json::string_t& k) {
    keys_.back().push_back(k);
    return dom_.key(k);
  }
  bool end_object() {
    auto& keys = keys_.back();
    std::sort(keys.begin(), keys.end());
    if (std::adjacent_find(keys.begin(), keys.end()) != keys.end()) {
      error_ = "duplicate key \"" + *std::adjacent_find(keys.begin(), keys.end()) + "\"";
      return false;
    }
    keys_.pop_back();
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    if (!enter()) return false;
    return dom_.start_array(n);
  }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t position, const std::string& token,
                   const nlohmann::detail::exception& e) {
    (void)token;
    (void)e;
    error_ = "not valid JSON (at byte " + std::to_string(position) + ")";
    return false;
  }

  /// Empty when the whole document was accepted.
  const std::string& error() const { return error_; }

 private:
  bool enter() {
    if (++depth_ > kMaxJsonDepth) {
      error_ = "JSON nested too deeply";
      return false;
    }
    return true;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<std::vector<std::string>> keys_;
  std::size_t depth_ = 0;
  std::string error_;
};

/// Parses `body`; on failure returns false and sets `error`.
bool parse_strict(std::string_view body, json& root, std::string& error) {
  StrictDomBuilder builder(root);
  const bool ok = json::sax_parse(body.data(), body.data() + body.size(), &builder);
  if (ok && builder.error().empty()) return true;
  error = builder.error().empty() ? std::string("not valid JSON") : builder.error();
  return false;
}

/// The string member `name` of object `obj`, or nullptr.
const std::string* string_member(const json& obj, const char* name) {
  const auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) return nullptr;
  return it->get_ptr<const std::string*>();
}

bool is_bundle_method(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE";
}

/// True when `url` starts with a URI scheme ("http:", "urn:"): a ':' before any '/', '?' or '#'.
bool has_scheme(std::string_view url) {
  const std::size_t colon = url.find(':');
  return colon != std::string_view::npos && colon < url.find_first_of("/?#");
}

/// Classifies entry `index`; returns an error text (without the entry prefix) or "".
std::string classify_entry(const json& entry, std::string_view base, FhirRequest& out) {
  if (!entry.is_object()) return "not an object";
  const auto request = entry.find("request");
  if (request == entry.end() || !request->is_object()) return "missing request";
  const std::string* method = string_member(*request, "method");
  if (method == nullptr) return "missing request.method";
  if (!is_bundle_method(*method)) return "request.method \"" + *method + "\" is not allowed";
  const std::string* url = string_member(*request, "url");
  if (url == nullptr || url->empty()) return "missing request.url";
  // request.url is relative to the base. An absolute URL can't be checked against the base (the
  // proxy does not know every name the server answers to) and a leading '/' is read differently by
  // different servers, so both are refused.
  if (has_scheme(*url)) return "absolute request.url is not allowed";
  if (url->front() == '/') return "request.url must be relative to the FHIR base";

  std::string target;
  target.reserve(base.size() + 1 + url->size());
  target.append(base).append("/").append(*url);
  std::string path;
  std::string query;
  const PathError err = split_target(target, path, query);
  if (err != PathError::kOk) return "request.url: " + std::string(to_string(err));
  if (needs_body(*method, path, base)) return "a nested batch/transaction is not allowed";
  out = classify(*method, path, query, base, {}, {});

  // A create/update whose resource is not of the type in the url would be checked against the wrong
  // resource type: refuse it rather than trust the server to.
  if (out.interaction == Interaction::kCreate || out.interaction == Interaction::kUpdate) {
    const auto resource = entry.find("resource");
    if (resource != entry.end()) {
      const std::string* type =
          resource->is_object() ? string_member(*resource, "resourceType") : nullptr;
      if (type == nullptr || *type != out.resource) {
        return "resource type does not match request.url";
      }
    }
  }
  return {};
}

}  // namespace

void inspect_bundle(std::string_view fhir_base, std::string_view content_type,
                    std::string_view body, FhirRequest& out) {
  out.interaction = Interaction::kUnknown;
  out.resource.clear();
  out.entries.clear();
  const auto fail = [&out](std::string why) {
    out.entries.clear();
    out.bundle_error = std::move(why);
  };
  if (!is_json_media_type(content_type)) {
    return fail("Bundle content type must be application/fhir+json or application/json");
  }
  json root;
  std::string error;
  if (!parse_strict(body, root, error)) return fail("Bundle is " + error);
  if (!root.is_object()) return fail("Bundle is not a JSON object");
  const std::string* resource_type = string_member(root, "resourceType");
  if (resource_type == nullptr || *resource_type != "Bundle")
    return fail("resourceType is not Bundle");
  const std::string* type = string_member(root, "type");
  if (type != nullptr && *type == "batch") {
    out.interaction = Interaction::kBatch;
  } else if (type != nullptr && *type == "transaction") {
    out.interaction = Interaction::kTransaction;
  } else {
    return fail("Bundle.type must be batch or transaction");
  }

  const auto entries = root.find("entry");
  if (entries == root.end()) return;
  if (!entries->is_array()) return fail("Bundle.entry is not an array");
  if (entries->size() > kMaxBundleEntries) {
    return fail("Bundle has more than " + std::to_string(kMaxBundleEntries) + " entries");
  }
  // Entries are classified below the same base as the Bundle itself, without its trailing '/'.
  std::string_view base = fhir_base;
  while (!base.empty() && base.back() == '/') base.remove_suffix(1);
  out.entries.resize(entries->size());
  for (std::size_t i = 0; i < entries->size(); ++i) {
    std::string why = classify_entry((*entries)[i], base, out.entries[i]);
    if (!why.empty()) return fail("entry " + std::to_string(i) + ": " + why);
  }
}

}  // namespace fmp::policy
