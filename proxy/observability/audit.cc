#include "proxy/observability/audit.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string_view>

#include "proxy/observability/metrics.h"

namespace fmp::proxy::observability {
namespace {

using ordered_json = nlohmann::ordered_json;

constexpr mode_t kAuditFileMode =
    0640;  // audit records name people and systems: not world-readable

// Certificate fields may hold bytes that are not UTF-8: replace them instead of throwing.
std::string dump(const ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string_view without_query(std::string_view path) {
  return path.substr(0, path.find('?'));
}

int open_append(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, kAuditFileMode);
}

// FHIR AuditEvent.action: C create, R read, U update, D delete, E execute (search, operations,
// bundles).
const char* action_code(std::string_view interaction, std::string_view method) {
  if (interaction == "create") return "C";
  if (interaction == "read" || interaction == "vread" || interaction == "history" ||
      interaction == "capabilities") {
    return "R";
  }
  if (interaction == "update" || interaction == "patch") return "U";
  if (interaction == "delete") return "D";
  if (interaction == "search" || interaction == "operation" || interaction == "batch" ||
      interaction == "transaction") {
    return "E";
  }
  // Outside FHIR (or unclassifiable): from the HTTP method.
  if (method == "GET" || method == "HEAD") return "R";
  if (method == "PUT" || method == "PATCH") return "U";
  if (method == "DELETE") return "D";
  return "E";
}

bool is_restful_interaction(std::string_view i) {
  for (std::string_view known : {"read", "vread", "update", "patch", "delete", "history", "create",
                                 "search", "capabilities", "transaction", "batch", "operation"}) {
    if (i == known) return true;
  }
  return false;
}

// FHIR AuditEvent.outcome: 0 success, 4 minor failure (denied, client error), 8 serious failure
// (5xx).
const char* outcome_code(const AuditEvent& e) {
  if (e.decision == "deny") return "4";
  if (e.status >= 500) return "8";
  if (e.status >= 400) return "4";
  return "0";
}

}  // namespace

std::string format_rfc3339_ms(std::chrono::system_clock::time_point t) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  auto secs = ms / 1000;
  auto frac = ms % 1000;
  if (frac < 0) {  // before 1970: floor, not truncate
    frac += 1000;
    secs -= 1;
  }
  const auto tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(frac));
  return buf;
}

std::string to_json_line(const AuditEvent& e) {
  ordered_json j;
  j["time"] = format_rfc3339_ms(e.time);
  j["connection_id"] = e.connection_id;
  j["request_id"] = e.request_id;
  j["client"] = e.client_address;
  j["subject"] = e.subject;
  j["san_uri"] = e.san_uri;
  j["fingerprint"] = e.fingerprint;
  j["trust"] = e.trust;
  j["hipaa"] = e.hipaa;
  j["method"] = e.method;
  j["path"] = without_query(e.path);
  j["fhir_resource"] = e.fhir_resource;
  j["fhir_interaction"] = e.fhir_interaction;
  j["fhir_operation"] = e.fhir_operation;
  j["decision"] = e.decision;
  j["rule"] = e.rule;
  j["mode"] = e.mode;
  j["reason"] = e.reason;
  j["status"] = e.status;
  j["bytes_in"] = e.bytes_in;
  j["bytes_out"] = e.bytes_out;
  j["duration_ms"] = e.duration_ms;
  return dump(j);
}

std::string to_fhir_audit_event(const AuditEvent& e) {
  ordered_json j;
  j["resourceType"] = "AuditEvent";
  j["type"] = {{"system", "http://terminology.hl7.org/CodeSystem/audit-event-type"},
               {"code", "rest"},
               {"display", "RESTful Operation"}};
  if (is_restful_interaction(e.fhir_interaction)) {
    j["subtype"] = ordered_json::array(
        {{{"system", "http://hl7.org/fhir/restful-interaction"}, {"code", e.fhir_interaction}}});
  }
  j["action"] = action_code(e.fhir_interaction, e.method);
  j["recorded"] = format_rfc3339_ms(e.time);
  j["outcome"] = outcome_code(e);
  std::string desc = e.decision + " (rule " + e.rule + ", " + e.mode + ")";
  if (!e.reason.empty()) desc += ": " + e.reason;
  j["outcomeDesc"] = desc;

  ordered_json agent;
  agent["requestor"] = true;
  ordered_json who;
  if (!e.fingerprint.empty()) {
    who["identifier"] = {{"type", {{"text", "X.509 certificate SHA-256 fingerprint"}}},
                         {"value", e.fingerprint}};
  }
  who["display"] = e.subject.empty() ? "anonymous" : e.subject;
  agent["who"] = who;
  if (!e.hipaa.empty()) {
    ordered_json roles = ordered_json::array();
    for (const auto& h : e.hipaa) roles.push_back({{"text", h}});
    agent["role"] = roles;
  }
  if (!e.client_address.empty()) {
    agent["network"] = {{"address", e.client_address}, {"type", "2"}};  // 2 = IP address
  }
  j["agent"] = ordered_json::array({agent});

  j["source"] = {
      {"observer", {{"display", "fhir-mtls-proxy"}}},
      {"type", ordered_json::array(
                   {{{"system", "http://terminology.hl7.org/CodeSystem/security-source-type"},
                     {"code", "4"},
                     {"display", "Application Server"}}})}};

  ordered_json details = ordered_json::array();
  auto detail = [&details](const char* type, const std::string& value) {
    if (!value.empty()) details.push_back({{"type", type}, {"valueString", value}});
  };
  detail("method", e.method);
  detail("fhir-resource", e.fhir_resource);
  detail("fhir-operation", e.fhir_operation);
  detail("decision", e.decision);
  detail("rule", e.rule);
  detail("mode", e.mode);
  detail("status", std::to_string(e.status));
  detail("trust", e.trust);
  for (const auto& uri : e.san_uri) detail("san-uri", uri);
  detail("connection-id", std::to_string(e.connection_id));
  detail("request-id", std::to_string(e.request_id));
  detail("bytes-in", std::to_string(e.bytes_in));
  detail("bytes-out", std::to_string(e.bytes_out));
  char duration[32];
  std::snprintf(duration, sizeof duration, "%.3f", e.duration_ms);
  detail("duration-ms", duration);

  ordered_json entity;
  entity["what"] = {{"display", std::string(without_query(e.path))}};
  entity["type"] = {{"system", "http://terminology.hl7.org/CodeSystem/audit-entity-type"},
                    {"code", "2"},
                    {"display", "System Object"}};
  entity["detail"] = details;
  j["entity"] = ordered_json::array({entity});
  return dump(j);
}

bool parse_audit_format(const std::string& s, AuditFormat& out) {
  if (s == "json") {
    out = AuditFormat::kJson;
    return true;
  }
  if (s == "fhir") {
    out = AuditFormat::kFhir;
    return true;
  }
  return false;
}

std::unique_ptr<AuditLog> AuditLog::open(const std::string& path, AuditFormat format,
                                         Metrics* metrics, std::size_t capacity) {
  int fd = STDOUT_FILENO;
  if (path != "-") {
    fd = open_append(path);
    if (fd < 0) {
      throw std::runtime_error("audit.path \"" + path + "\": cannot open: " + std::strerror(errno));
    }
  }
  return std::unique_ptr<AuditLog>(new AuditLog(path, format, metrics, capacity, fd));
}

AuditLog::AuditLog(std::string path, AuditFormat format, Metrics* metrics, std::size_t capacity,
                   int fd)
    : path_(std::move(path)),
      format_(format),
      metrics_(metrics),
      capacity_(capacity),
      fd_(fd),
      writer_([this] { run(); }) {}

AuditLog::~AuditLog() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  writer_.join();
  if (path_ != "-") ::close(fd_);
}

bool AuditLog::write(AuditEvent event) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= capacity_) {
      // Unhealthy until the writer's next batch: audit.on_failure applies meanwhile.
      if (!stopping_) healthy_ = false;
      ++dropped_;
      if (metrics_ != nullptr) metrics_->count_audit_dropped();
      return false;
    }
    queue_.push_back(std::move(event));
    ++queued_;
    // Wake the writer for the first event of a batch and when a batch is large; in between it
    // gathers events for kBatchDelay, so a busy proxy wakes it ~50 times a second, not per request.
    if (queue_.size() != 1 && queue_.size() != kUrgentBatch) return true;
    if (queue_.size() == kUrgentBatch) urgent_ = true;
  }
  wake_.notify_one();
  return true;
}

void AuditLog::reopen() {
  {
    std::lock_guard lock(mutex_);
    ++reopen_requested_;
  }
  wake_.notify_one();
}

void AuditLog::flush() {
  std::unique_lock lock(mutex_);
  urgent_ = true;
  wake_.notify_one();
  const std::uint64_t events = queued_;
  const std::uint64_t reopens = reopen_requested_;
  done_.wait(lock, [&] { return processed_ >= events && reopen_done_ >= reopens; });
}

bool AuditLog::healthy() const {
  std::lock_guard lock(mutex_);
  return healthy_;
}

std::uint64_t AuditLog::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

std::uint64_t AuditLog::write_errors() const {
  std::lock_guard lock(mutex_);
  return write_errors_;
}

namespace {
/// How long the writer gathers events before writing them (bounds audit latency, not durability:
/// the proxy does not wait for the disk either way).
constexpr std::chrono::milliseconds kBatchDelay{20};
}  // namespace

void AuditLog::run() {
  std::deque<AuditEvent> batch;
  std::string out;
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock,
               [&] { return stopping_ || !queue_.empty() || reopen_requested_ != reopen_done_; });
    // Gather a batch: more events arrive while the writer waits; flush(), stop, reopen and a large
    // batch cut the wait short.
    wake_.wait_for(lock, kBatchDelay,
                   [&] { return stopping_ || urgent_ || reopen_requested_ != reopen_done_; });
    urgent_ = false;
    if (stopping_ && queue_.empty() && reopen_requested_ == reopen_done_) return;
    const std::uint64_t reopen_target = reopen_requested_;
    const bool want_reopen = reopen_target != reopen_done_;
    batch.swap(queue_);
    lock.unlock();

    // Reopen before writing the batch: every event queued after reopen() returned is in this batch
    // or a later one, so it lands in the new file. A failed reopen is retried with every batch.
    if (want_reopen || reopen_failing_) reopen_failing_ = !do_reopen();

    out.clear();
    std::uint64_t unformatted = 0;
    for (const auto& e : batch) {
      try {
        out += format_ == AuditFormat::kFhir ? to_fhir_audit_event(e) : to_json_line(e);
        out += '\n';
      } catch (const std::exception&) {  // allocation failure: count the event as lost
        ++unformatted;
      }
    }
    const bool write_ok = out.empty() || write_all(out);
    const std::uint64_t lost = write_ok ? unformatted : batch.size();
    if (metrics_ != nullptr) {
      for (std::uint64_t i = 0; i < lost; ++i) metrics_->count_audit_write_error();
    }

    lock.lock();
    if (want_reopen) reopen_done_ = reopen_target;
    if (!batch.empty()) last_write_ok_ = write_ok && lost == 0;
    healthy_ = last_write_ok_ && !reopen_failing_;
    write_errors_ += lost;
    processed_ += batch.size();
    batch.clear();
    done_.notify_all();
  }
}

bool AuditLog::write_all(const std::string& data) {
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return true;
}

bool AuditLog::do_reopen() {
  if (path_ == "-") return true;
  const int fd = open_append(path_);
  if (fd < 0) return false;  // keep writing to the old file: better than losing events
  ::close(fd_);
  fd_ = fd;
  return true;
}

}  // namespace fmp::proxy::observability
