#include "proxy/cli/explain_json.h"

namespace fmp::proxy::cli {
namespace {

nlohmann::json dn_json(const policy::DistinguishedName& dn) {
  nlohmann::json attrs = nlohmann::json::array();
  for (const auto& a : dn.attributes) attrs.push_back({{"type", a.type}, {"value", a.value}});
  return {{"dn", dn.rfc4514}, {"attributes", std::move(attrs)}};
}

}  // namespace

std::string rfc3339_utc(std::int64_t t) {
  const auto tt = static_cast<std::time_t>(t);
  std::tm tm{};
  if (gmtime_r(&tt, &tm) == nullptr) return "";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string_view effect_name(policy::Effect e) {
  return e == policy::Effect::kAllow ? "allow" : "deny";
}

std::string_view mode_name(policy::Mode m) {
  return m == policy::Mode::kShadow ? "shadow" : "enforce";
}

nlohmann::json identity_json(const policy::Identity& id) {
  return {
      {"present", id.present},
      {"subject", dn_json(id.subject)},
      {"issuer", dn_json(id.issuer)},
      {"san_uri", id.san_uri},
      {"san_dns", id.san_dns},
      {"san_email", id.san_email},
      {"san_ip", id.san_ip},
      {"cert_policies", id.cert_policies},
      {"hipaa", id.hipaa},
      {"notes", id.notes},
      {"serial_hex", id.serial_hex},
      {"fingerprint_sha256", id.fingerprint_sha256},
      {"not_before", id.not_before},
      {"not_after", id.not_after},
      {"not_before_utc", rfc3339_utc(id.not_before)},
      {"not_after_utc", rfc3339_utc(id.not_after)},
      {"trust", id.trust},
      {"leaf_pem", id.leaf_pem},
      {"chain_der_b64", id.chain_der_b64},
  };
}

nlohmann::json request_json(const policy::FhirRequest& r) {
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& e : r.entries) entries.push_back(request_json(e));
  return {
      {"method", r.method},
      {"path", r.path},
      {"interaction", std::string(policy::to_string(r.interaction))},
      {"resource", r.resource},
      {"id", r.id},
      {"version", r.version},
      {"operation", r.operation},
      {"entries", std::move(entries)},
      {"bundle_error", r.bundle_error},
  };
}

nlohmann::json decision_json(const policy::Decision& d) {
  return {{"effect", std::string(effect_name(d.effect))},
          {"rule", d.rule},
          {"mode", std::string(mode_name(d.mode))},
          {"reason", d.reason}};
}

nlohmann::json shadow_json(const std::vector<policy::ShadowResult>& shadow) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : shadow)
    out.push_back({{"rule", s.rule}, {"effect", std::string(effect_name(s.effect))}});
  return out;
}

nlohmann::json verification_json(const tls::VerifyResult& v) {
  return {{"ok", v.ok},
          {"reason", std::string(tls::to_string(v.reason))},
          {"community", v.community},
          {"message", v.message}};
}

}  // namespace fmp::proxy::cli
