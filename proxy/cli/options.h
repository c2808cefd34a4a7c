// Command-line options of the subcommands: "--name value", "--name=value" and flags.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace fmp::proxy::cli {

/// Parsed options. Each option may be given once.
struct Options {
  std::map<std::string, std::string> values;  ///< "--config" -> "conf/proxy.yaml"
  std::set<std::string> flags;                ///< "--json"

  std::optional<std::string> get(const std::string& name) const {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  }
  bool has(const std::string& flag) const { return flags.count(flag) != 0; }
};

/// Parses `args` against the allowed option names (taking a value) and flag names. Returns nullopt
/// with `error` set on an unknown option, a positional argument, a missing or empty value, or a
/// repetition.
std::optional<Options> parse_options(const std::vector<std::string>& args,
                                     const std::set<std::string>& with_value,
                                     const std::set<std::string>& flags, std::string& error);

}  // namespace fmp::proxy::cli
