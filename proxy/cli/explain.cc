// `explain --config FILE --cert PEM [--method M] --path P [--body FILE] [--json]`: shows what the
// proxy would do with one request from the holder of a certificate: the identity it extracts, how
// it classifies the request, and the decision with the rule that made it. Exit 0 allow, 2 deny, 1
// error.
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>

#include "policy/fhir_classify.h"
#include "policy/x509_identity.h"
#include "proxy/cli/commands.h"
#include "proxy/cli/explain_json.h"
#include "proxy/cli/options.h"
#include "proxy/config/proxy_config.h"
#include "proxy/config/validate_files.h"
#include "proxy/tls/trust_store.h"

namespace fmp::proxy::cli {
namespace {

constexpr const char* kUsage =
    "usage: fhir-mtls-proxy explain --config FILE --cert CLIENT.pem [--method M] --path P\n"
    "                               [--body FILE] [--json]\n";
constexpr int kExitAllow = 0;
constexpr int kExitError = 1;
constexpr int kExitDeny = 2;
constexpr const char* kBodyContentType = "application/fhir+json";

int usage(const std::string& why) {
  std::fprintf(stderr, "fhir-mtls-proxy explain: %s\n%s", why.c_str(), kUsage);
  return kExitError;
}

int config_errors(const policy::ConfigError& e) {
  for (const auto& d : e.diagnostics()) std::fprintf(stderr, "%s\n", d.str().c_str());
  return kExitError;
}

bool is_token(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    (c != '\0' && std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string::npos);
    if (!ok) return false;
  }
  return true;
}

/// Everything explain found, for either output format.
struct Explanation {
  policy::Identity identity;
  tls::VerifyResult verification;
  policy::FhirRequest request;
  std::string target;  ///< --path as given
  policy::PathError path_error = policy::PathError::kOk;
  policy::Decision decision;
};

/// What the proxy does with a certificate that fails verification, by client_cert mode.
std::string refusal(const tls::VerifyResult& v, ClientCertMode mode) {
  std::string out = "certificate not verified: " + std::string(tls::to_string(v.reason));
  if (!v.message.empty()) out += " (" + v.message + ")";
  if (mode == ClientCertMode::kRequire)
    return out + "; the TLS handshake fails (client_cert: require)";
  const bool expired = v.reason == tls::VerifyReason::kExpired;
  return out + "; 401 " + (expired ? "expired" : "security") + " (client_cert: request)";
}

std::string list(const std::vector<std::string>& v) {
  if (v.empty()) return "-";
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

void line(const char* label, const std::string& value) {
  std::printf("  %-13s %s\n", label, value.empty() ? "-" : value.c_str());
}

void print_request(const policy::FhirRequest& r, const std::string& indent) {
  std::printf("%s%s %s -> %s", indent.c_str(), r.method.c_str(), r.path.c_str(),
              std::string(policy::to_string(r.interaction)).c_str());
  if (!r.resource.empty()) std::printf(" %s", r.resource.c_str());
  if (!r.id.empty()) std::printf(" id=%s", r.id.c_str());
  if (!r.version.empty()) std::printf(" version=%s", r.version.c_str());
  if (!r.operation.empty()) std::printf(" %s", r.operation.c_str());
  std::printf("\n");
}

void print_text(const Explanation& x) {
  const policy::Identity& id = x.identity;
  std::printf("Verification\n");
  if (x.verification.ok)
    line("result:", "ok (trust community " + x.verification.community + ")");
  else
    line("result:",
         "failed: " + std::string(tls::to_string(x.verification.reason)) +
             (x.verification.message.empty() ? "" : " (" + x.verification.message + ")"));

  std::printf("Identity\n");
  line("subject:", id.subject.rfc4514);
  line("issuer:", id.issuer.rfc4514);
  line("serial:", id.serial_hex);
  line("sha256:", id.fingerprint_sha256);
  line("valid:", rfc3339_utc(id.not_before) + " to " + rfc3339_utc(id.not_after));
  line("SAN URI:", list(id.san_uri));
  line("SAN DNS:", list(id.san_dns));
  line("SAN email:", list(id.san_email));
  line("SAN IP:", list(id.san_ip));
  line("policies:", list(id.cert_policies));
  line("HIPAA:", list(id.hipaa));
  line("trust:", id.trust);
  line("chain:", std::to_string(id.chain_der_b64.size()) + " intermediate(s) presented");
  for (const auto& n : id.notes) line("note:", n);

  std::printf("Request\n");
  if (x.path_error != policy::PathError::kOk) {
    line("target:", x.target);
    line("rejected:", "400 structure: " + std::string(policy::to_string(x.path_error)));
  } else {
    const policy::FhirRequest& r = x.request;
    line("method:", r.method);
    line("path:", r.path);
    line("interaction:", std::string(policy::to_string(r.interaction)));
    line("resource:", r.resource);
    line("id:", r.id);
    if (!r.version.empty()) line("version:", r.version);
    if (!r.operation.empty()) line("operation:", r.operation);
    if (!r.entries.empty()) {
      std::printf("  entries:\n");
      for (std::size_t i = 0; i < r.entries.size(); ++i)
        print_request(r.entries[i], "    " + std::to_string(i + 1) + ". ");
    }
    if (!r.bundle_error.empty()) line("bundle error:", r.bundle_error);
  }

  std::printf("Decision\n");
  line("effect:", std::string(effect_name(x.decision.effect)));
  line("rule:", x.decision.rule);
  line("mode:", std::string(mode_name(x.decision.mode)));
  line("reason:", x.decision.reason);

  std::printf("Shadow\n");
  if (x.decision.shadow.empty()) std::printf("  -\n");
  for (const auto& s : x.decision.shadow)
    std::printf("  %s: would %s\n", s.rule.c_str(), std::string(effect_name(s.effect)).c_str());
}

void print_json(const Explanation& x) {
  nlohmann::json request = request_json(x.request);
  if (x.path_error != policy::PathError::kOk) {
    request["target"] = x.target;
    request["error"] = std::string(policy::to_string(x.path_error));
  }
  const nlohmann::json out = {
      {"identity", identity_json(x.identity)},
      {"verification", verification_json(x.verification)},
      {"request", std::move(request)},
      {"decision", decision_json(x.decision)},
      {"shadow", shadow_json(x.decision.shadow)},
  };
  std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

bool read_body(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  out = s.str();
  return !in.bad();
}

}  // namespace

int explain_command(const std::vector<std::string>& args) {
  std::string error;
  const auto opts = parse_options(args, {"--config", "--cert", "--method", "--path", "--body"},
                                  {"--json"}, error);
  if (!opts) return usage(error);
  for (const char* required : {"--config", "--cert", "--path"})
    if (!opts->get(required)) return usage(std::string("missing ") + required);
  std::string method = opts->get("--method").value_or("GET");
  for (char& c : method)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  if (!is_token(method)) return usage("--method must be an HTTP method such as GET");

  ProxyConfig config;
  std::shared_ptr<const tls::TrustStore> trust;
  policy::PolicyPtr policy;
  try {
    config = load_proxy_config(*opts->get("--config"));
    trust = tls::TrustStore::load(config.tls.trust, config.file);
    policy = load_configured_policy(config);
  } catch (const policy::ConfigError& e) {
    return config_errors(e);
  }

  std::vector<ssl::X509Ptr> certs;
  try {
    certs = policy::read_pem_certificates(*opts->get("--cert"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fhir-mtls-proxy explain: --cert: %s\n", e.what());
    return kExitError;
  }
  std::string body;
  if (const auto body_file = opts->get("--body"); body_file && !read_body(*body_file, body)) {
    std::fprintf(stderr, "fhir-mtls-proxy explain: --body: cannot read '%s'\n", body_file->c_str());
    return kExitError;
  }

  // The presented intermediates, as a client would send them after its leaf.
  ssl::X509StackPtr chain(sk_X509_new_null());
  if (!chain) return kExitError;
  for (std::size_t i = 1; i < certs.size(); ++i) {
    X509_up_ref(certs[i].get());
    if (sk_X509_push(chain.get(), certs[i].get()) <= 0) {
      X509_free(certs[i].get());
      return kExitError;
    }
  }
  X509* leaf = certs.front().get();

  Explanation x;
  x.verification = trust->verify(leaf, chain.get(), std::time(nullptr));
  // An unverified certificate belongs to no community: its identity is shown, never trusted.
  x.identity = policy::extract_identity(leaf, chain.get(), policy->hipaa(),
                                        x.verification.ok ? x.verification.community : "");
  x.target = *opts->get("--path");
  std::string path;
  std::string query;
  x.path_error = policy::split_target(x.target, path, query);
  if (x.path_error == policy::PathError::kOk) {
    x.request = policy::classify(method, path, query, config.fhir_base, kBodyContentType, body);
  } else {
    x.request.method = method;
    x.request.path = x.target;
  }

  if (!x.verification.ok) {
    x.decision.effect = policy::Effect::kDeny;
    x.decision.rule = "";
    x.decision.reason = refusal(x.verification, config.tls.client_cert);
  } else if (x.path_error != policy::PathError::kOk) {
    x.decision.effect = policy::Effect::kDeny;
    x.decision.rule = "";
    x.decision.reason = "400 structure: " + std::string(policy::to_string(x.path_error));
  } else {
    x.decision = policy->evaluate(x.identity, x.request);
  }

  if (opts->has("--json")) {
    print_json(x);
  } else {
    print_text(x);
  }
  return x.decision.allowed() ? kExitAllow : kExitDeny;
}

}  // namespace fmp::proxy::cli
