// Loading policy files (YAML) into a compiled Policy.
#pragma once

#include <string>

#include "policy/config_error.h"
#include "policy/policy.h"

namespace fmp::policy {

/// Loads `path`: a policy file, or a directory whose *.yaml files load in lexical order.
/// Throws ConfigError carrying every FILE:LINE:COL diagnostic; on any error nothing is returned.
PolicyPtr load_policy(const std::string& path);

/// Loads policy YAML from memory; `name` is the file name used in diagnostics.
PolicyPtr load_policy_text(const std::string& text, const std::string& name);

}  // namespace fmp::policy
