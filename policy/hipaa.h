// How HIPAA categories are found in a certificate: certificatePolicies OIDs mapped to names, plus
// optional private extensions that carry the category directly.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace fmp::policy {

/// Configuration of HIPAA category extraction. Built from a policy file's `hipaa_categories` and
/// `hipaa_extensions` on top of the DirectTrust built-ins; immutable once a policy is compiled.
struct HipaaConfig {
  std::map<std::string, std::string> categories;  ///< certificatePolicies OID -> category name
  std::vector<std::string> extensions;  ///< OIDs of private extensions carrying a category

  /// The built-in DirectTrust mapping: 41179.2.1 covered-entity, .2.2 business-associate,
  /// .2.3 healthcare-entity, .2.4 patient.
  static HipaaConfig directtrust_defaults() {
    HipaaConfig c;
    c.categories = {{"1.3.6.1.4.1.41179.2.1", "covered-entity"},
                    {"1.3.6.1.4.1.41179.2.2", "business-associate"},
                    {"1.3.6.1.4.1.41179.2.3", "healthcare-entity"},
                    {"1.3.6.1.4.1.41179.2.4", "patient"}};
    return c;
  }
};

}  // namespace fmp::policy
