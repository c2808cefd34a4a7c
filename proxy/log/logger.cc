#include "proxy/log/logger.h"

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

namespace fmp::proxy {
namespace {

std::string_view level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::string now_rfc3339() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t secs = system_clock::to_time_t(now);
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

void Logger::log(LogLevel level, std::string_view msg, const LogFields& fields) {
  if (level < min_level_) return;
  nlohmann::ordered_json j;
  j["time"] = now_rfc3339();
  j["level"] = level_name(level);
  j["msg"] = msg;
  for (const auto& [k, v] : fields) j[std::string(k)] = v;
  // Invalid UTF-8 in a field (e.g. from a certificate) is replaced rather than thrown on.
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  std::lock_guard lock(mu_);
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

}  // namespace fmp::proxy
