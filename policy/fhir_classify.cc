// FHIR RESTful classification of a normalised path (https://hl7.org/fhir/R4/http.html).
#include "policy/fhir_classify.h"

#include <array>
#include <cstddef>

#include "policy/fhir_bundle.h"

namespace fmp::policy {
namespace {

/// The methods classification tells apart; HEAD counts as GET.
enum class Verb { kGet, kPost, kPut, kPatch, kDelete, kOther };

Verb verb_of(std::string_view method) {
  if (method == "GET" || method == "HEAD") return Verb::kGet;
  if (method == "POST") return Verb::kPost;
  if (method == "PUT") return Verb::kPut;
  if (method == "PATCH") return Verb::kPatch;
  if (method == "DELETE") return Verb::kDelete;
  return Verb::kOther;
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

/// FHIR resource type names: [A-Z][A-Za-z]*.
bool is_resource_type(std::string_view s) {
  if (s.empty() || !is_upper(s.front())) return false;
  for (char c : s) {
    if (!is_alpha(c)) return false;
  }
  return true;
}

/// FHIR id (also used for version ids): [A-Za-z0-9.-]{1,64}.
bool is_fhir_id(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '.') return false;
  }
  return true;
}

/// Operation names: '$' followed by [A-Za-z0-9_-]+.
bool is_operation(std::string_view s) {
  if (s.size() < 2 || s.front() != '$') return false;
  for (char c : s.substr(1)) {
    if (!is_alpha(c) && !is_digit(c) && c != '_' && c != '-') return false;
  }
  return true;
}

/// The longest path FHIR REST defines below the base: [type]/[id]/_history/[vid] or
/// [type]/[id]/[type]/_search.
constexpr std::size_t kMaxSegments = 4;

struct Segments {
  std::array<std::string_view, kMaxSegments> at{};
  std::size_t count = 0;
};

std::string_view normalised_base(std::string_view base) {
  while (!base.empty() && base.back() == '/') base.remove_suffix(1);
  return base;
}

enum class Split { kOk, kOutsideBase, kUnclassifiable };

/// Splits the part of `path` below `base` into segments. One trailing '/' is ignored, so "/fhir/"
/// is the base and "/fhir/Patient/" is "/fhir/Patient".
Split split_relative(std::string_view path, std::string_view base, Segments& segs) {
  base = normalised_base(base);
  if (path.substr(0, base.size()) != base) return Split::kOutsideBase;
  std::string_view rel = path.substr(base.size());
  if (rel.empty()) return Split::kOk;
  if (rel.front() != '/') return Split::kOutsideBase;  // "/fhirx" is not below "/fhir"
  if (rel.find("//") != std::string_view::npos) return Split::kUnclassifiable;
  rel.remove_prefix(1);
  if (!rel.empty() && rel.back() == '/') rel.remove_suffix(1);
  while (!rel.empty()) {
    if (segs.count == kMaxSegments) return Split::kUnclassifiable;
    const std::size_t slash = rel.find('/');
    segs.at[segs.count++] = rel.substr(0, slash);
    rel = slash == std::string_view::npos ? std::string_view{} : rel.substr(slash + 1);
  }
  return Split::kOk;
}

/// Sets the FHIR meaning; the fields not named stay empty.
void set(FhirRequest& r, Interaction i, std::string_view resource = {}, std::string_view id = {},
         std::string_view version = {}, std::string_view operation = {}) {
  r.interaction = i;
  r.resource.assign(resource);
  r.id.assign(id);
  r.version.assign(version);
  r.operation.assign(operation);
}

bool is_get_or_post(Verb v) {
  return v == Verb::kGet || v == Verb::kPost;
}

/// System level: [base], [base]/metadata, [base]/_history, [base]/_search, [base]/$op.
/// Returns false when the request fits no interaction.
bool classify_system(Verb v, const Segments& s, FhirRequest& r) {
  if (s.count == 0) {
    if (v == Verb::kGet) {
      set(r, Interaction::kSearch);
      return true;
    }
    return false;  // POST is handled by the caller (Bundle); the rest fits nothing
  }
  if (s.count != 1) return false;  // e.g. metadata/x, _history/x: no system interaction
  const std::string_view name = s.at[0];
  if (name == "metadata" && v == Verb::kGet) {
    set(r, Interaction::kCapabilities);
  } else if (name == "_history" && v == Verb::kGet) {
    set(r, Interaction::kHistory);
  } else if (name == "_search" && is_get_or_post(v)) {
    set(r, Interaction::kSearch);
  } else if (is_operation(name) && is_get_or_post(v)) {
    set(r, Interaction::kOperation, {}, {}, {}, name);
  } else {
    return false;
  }
  return true;
}

/// [type] and [type]/x.
bool classify_type(Verb v, const Segments& s, FhirRequest& r) {
  const std::string_view type = s.at[0];
  if (s.count == 1) {
    switch (v) {
      case Verb::kGet:
        set(r, Interaction::kSearch, type);
        return true;
      case Verb::kPost:
        set(r, Interaction::kCreate, type);
        return true;
      case Verb::kPut:
        set(r, Interaction::kUpdate, type);
        return true;  // conditional update
      case Verb::kPatch:
        set(r, Interaction::kPatch, type);
        return true;  // conditional patch
      case Verb::kDelete:
        set(r, Interaction::kDelete, type);
        return true;  // conditional delete
      case Verb::kOther:
        return false;
    }
    return false;
  }
  const std::string_view second = s.at[1];
  if (second == "_search" && is_get_or_post(v)) {
    set(r, Interaction::kSearch, type);
  } else if (second == "_history" && v == Verb::kGet) {
    set(r, Interaction::kHistory, type);
  } else if (is_operation(second) && is_get_or_post(v)) {
    set(r, Interaction::kOperation, type, {}, {}, second);
  } else if (is_fhir_id(second)) {
    switch (v) {
      case Verb::kGet:
        set(r, Interaction::kRead, type, second);
        return true;
      case Verb::kPut:
        set(r, Interaction::kUpdate, type, second);
        return true;
      case Verb::kPatch:
        set(r, Interaction::kPatch, type, second);
        return true;
      case Verb::kDelete:
        set(r, Interaction::kDelete, type, second);
        return true;
      case Verb::kPost:
      case Verb::kOther:
        return false;
    }
    return false;
  } else {
    return false;
  }
  return true;
}

/// [type]/[id]/x and [type]/[id]/x/y.
bool classify_instance(Verb v, const Segments& s, FhirRequest& r) {
  const std::string_view type = s.at[0];
  const std::string_view id = s.at[1];
  if (!is_fhir_id(id)) return false;
  const std::string_view third = s.at[2];
  if (s.count == 3) {
    if (third == "_history" && v == Verb::kGet) {
      set(r, Interaction::kHistory, type, id);
    } else if (is_operation(third) && is_get_or_post(v)) {
      set(r, Interaction::kOperation, type, id, {}, third);
    } else if (is_resource_type(third) && v == Verb::kGet) {
      // Compartment search (Patient/123/Observation): the resource is what is returned.
      set(r, Interaction::kSearch, third);
    } else {
      return false;
    }
    return true;
  }
  const std::string_view fourth = s.at[3];
  if (third == "_history" && is_fhir_id(fourth) && v == Verb::kGet) {
    set(r, Interaction::kVread, type, id, fourth);
  } else if (is_resource_type(third) && fourth == "_search" && is_get_or_post(v)) {
    set(r, Interaction::kSearch, third);
  } else {
    return false;
  }
  return true;
}

}  // namespace

void classify_into(std::string_view method, std::string_view path, std::string_view query,
                   std::string_view fhir_base, std::string_view content_type, std::string_view body,
                   FhirRequest& r) {
  (void)query;  // the interaction never depends on the query (search parameters, _format, ...)
  // Every field replaced with assign/clear, so a reused FhirRequest keeps its strings' storage.
  r.method.assign(method);
  r.path.assign(path);
  set(r, Interaction::kNone);
  r.entries.clear();
  r.bundle_error.clear();
  Segments segs;
  switch (split_relative(path, fhir_base, segs)) {
    case Split::kOutsideBase:
      r.interaction = Interaction::kNone;
      return;
    case Split::kUnclassifiable:
      r.interaction = Interaction::kUnknown;
      return;
    case Split::kOk:
      break;
  }
  const Verb verb = verb_of(method);
  bool known = false;
  if (segs.count == 0 && verb == Verb::kPost) {
    inspect_bundle(fhir_base, content_type, body, r);
    return;
  }
  if (segs.count == 0 || !is_resource_type(segs.at[0])) {
    known = classify_system(verb, segs, r);
  } else if (segs.count <= 2) {
    known = classify_type(verb, segs, r);
  } else {
    known = classify_instance(verb, segs, r);
  }
  if (!known) set(r, Interaction::kUnknown);
}

FhirRequest classify(std::string_view method, std::string_view path, std::string_view query,
                     std::string_view fhir_base, std::string_view content_type,
                     std::string_view body) {
  FhirRequest r;
  classify_into(method, path, query, fhir_base, content_type, body, r);
  return r;
}

bool needs_body(std::string_view method, std::string_view path, std::string_view fhir_base) {
  if (method != "POST") return false;
  Segments segs;
  return split_relative(path, fhir_base, segs) == Split::kOk && segs.count == 0;
}

}  // namespace fmp::policy
