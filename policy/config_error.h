// Configuration errors with their position, printed as FILE:LINE:COL: message.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace fmp::policy {

/// One problem in a configuration file. `line` and `column` are 1-based (yaml-cpp's Mark is
/// 0-based: add 1). When the position is unknown (an unreadable file), both are 1.
struct Diagnostic {
  std::string file;
  int line = 1;
  int column = 1;
  std::string message;

  /// "FILE:LINE:COL: message"
  std::string str() const {
    return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
  }
};

/// Thrown only while loading configuration (never on the data path). Carries every diagnostic
/// found; loading is all-or-nothing.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<Diagnostic> diagnostics)
      : std::runtime_error(diagnostics.empty() ? std::string("invalid configuration")
                                               : diagnostics.front().str()),
        diagnostics_(std::move(diagnostics)) {}
  explicit ConfigError(Diagnostic d) : ConfigError(std::vector<Diagnostic>{std::move(d)}) {}
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

}  // namespace fmp::policy
