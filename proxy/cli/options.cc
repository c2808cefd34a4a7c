#include "proxy/cli/options.h"

namespace fmp::proxy::cli {

std::optional<Options> parse_options(const std::vector<std::string>& args,
                                     const std::set<std::string>& with_value,
                                     const std::set<std::string>& flags, std::string& error) {
  Options out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::optional<std::string> value;
    if (name.rfind("--", 0) != 0) {
      error = "unexpected argument '" + name + "'";
      return std::nullopt;
    }
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (flags.count(name)) {
      if (value) {
        error = "option " + name + " takes no value";
        return std::nullopt;
      }
      if (!out.flags.insert(name).second) {
        error = "option " + name + " given twice";
        return std::nullopt;
      }
      continue;
    }
    if (!with_value.count(name)) {
      error = "unknown option '" + name + "'";
      return std::nullopt;
    }
    if (!value) {
      if (i + 1 >= args.size()) {
        error = "option " + name + " needs a value";
        return std::nullopt;
      }
      value = args[++i];
    }
    if (value->empty()) {
      error = "option " + name + " needs a non-empty value";
      return std::nullopt;
    }
    if (!out.values.emplace(name, *value).second) {
      error = "option " + name + " given twice";
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace fmp::proxy::cli
