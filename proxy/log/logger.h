// Structured logging: one JSON object per line on stderr (or any FILE*), with a level.
//
// Passed by reference to everything that logs; never global. Thread-safe: one mutex around one
// write, which is fine because nothing on the per-request success path logs.
#pragma once

#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fmp::proxy {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

/// Extra key/value pairs of one log line. Values are strings; numbers are written as strings.
using LogFields = std::vector<std::pair<std::string_view, std::string>>;

class Logger {
 public:
  explicit Logger(std::FILE* out = stderr, LogLevel min_level = LogLevel::kInfo)
      : out_(out), min_level_(min_level) {}

  /// Writes {"time":..., "level":..., "msg":..., fields...} as one line.
  void log(LogLevel level, std::string_view msg, const LogFields& fields = {});

  void debug(std::string_view msg, const LogFields& f = {}) { log(LogLevel::kDebug, msg, f); }
  void info(std::string_view msg, const LogFields& f = {}) { log(LogLevel::kInfo, msg, f); }
  void warn(std::string_view msg, const LogFields& f = {}) { log(LogLevel::kWarn, msg, f); }
  void error(std::string_view msg, const LogFields& f = {}) { log(LogLevel::kError, msg, f); }

 private:
  std::FILE* out_;
  LogLevel min_level_;
  std::mutex mu_;
};

}  // namespace fmp::proxy
