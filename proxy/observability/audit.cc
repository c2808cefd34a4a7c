#include "proxy/observability/audit.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <initializer_list>
#include <stdexcept>
#include <string_view>

#include "proxy/observability/json_writer.h"
#include "proxy/observability/metrics.h"

namespace fmp::proxy::observability {
namespace {

constexpr mode_t kAuditFileMode =
    0640;  // audit records name people and systems: not world-readable

// Decimal text of a number in a stack buffer, for FHIR's string-valued details.
class NumberText {
 public:
  template <typename Int>
  std::string_view integer(Int v) {
    const auto r = std::to_chars(buf_, buf_ + sizeof buf_, v);
    return {buf_, static_cast<std::size_t>(r.ptr - buf_)};
  }
  /// printf's "%.3f", cut to 31 characters like the snprintf into char[32] it replaces.
  std::string_view fixed3(double v) {
    constexpr std::size_t kLimit = 31;
    const auto r = std::to_chars(buf_, buf_ + kLimit, v, std::chars_format::fixed, 3);
    if (r.ec == std::errc()) return {buf_, static_cast<std::size_t>(r.ptr - buf_)};
    const int n = std::snprintf(buf_, kLimit + 1, "%.3f", v);  // too long: printf truncates
    return {buf_, n < 0 ? 0 : std::min(static_cast<std::size_t>(n), kLimit)};
  }

 private:
  char buf_[32];
};

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

const AuditPeer& peer_of(const AuditEvent& e) {
  static const AuditPeer kNoPeer;  // immutable: shared read-only by every writer
  return e.peer ? *e.peer : kNoPeer;
}

std::string_view client_address_of(const AuditEvent& e) {
  return e.client_address ? std::string_view(*e.client_address) : std::string_view();
}

void write_peer_members(JsonWriter& w, const AuditPeer& peer) {
  w.field("subject", peer.subject);
  w.key("san_uri").string_array(peer.san_uri);
  w.field("fingerprint", peer.fingerprint);
  w.field("trust", peer.trust);
  w.key("hipaa").string_array(peer.hipaa);
}

}  // namespace

std::string_view Rfc3339MsFormatter::format(std::chrono::system_clock::time_point t) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  const std::int64_t ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  std::int64_t secs = ms / 1000;
  std::int64_t frac = ms % 1000;
  if (frac < 0) {  // before 1970: floor, not truncate
    frac += 1000;
    secs -= 1;
  }
  if (prefix_length_ == 0 || secs != second_) {
    const auto tt = static_cast<std::time_t>(secs);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    const int n =
        std::snprintf(buf_, kMaxLength, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    // At most 26 characters (an 11-character year); the clamp only guards the arithmetic below.
    prefix_length_ = n <= 0 ? 0 : std::min(static_cast<std::size_t>(n), kMaxLength - 6);
    second_ = secs;
  }
  char* p = buf_ + prefix_length_;
  p[0] = '.';
  p[1] = static_cast<char>('0' + frac / 100);
  p[2] = static_cast<char>('0' + frac / 10 % 10);
  p[3] = static_cast<char>('0' + frac % 10);
  p[4] = 'Z';
  return {buf_, prefix_length_ + 5};
}

std::string format_rfc3339_ms(std::chrono::system_clock::time_point t) {
  Rfc3339MsFormatter formatter;
  return std::string(formatter.format(t));
}

void prepare_audit_peer(AuditPeer& peer) {
  std::string members;
  JsonWriter w(members);
  write_peer_members(w, peer);
  peer.json_members = std::move(members);
}

void append_json_line(std::string& out, const AuditEvent& e, Rfc3339MsFormatter& time) {
  const AuditPeer& peer = peer_of(e);
  JsonWriter w(out);
  w.begin_object();
  w.field("time", time.format(e.time));
  w.field("connection_id", e.connection_id);
  w.field("request_id", e.request_id);
  w.field("client", client_address_of(e));
  if (peer.json_members.empty())
    write_peer_members(w, peer);
  else
    w.members(peer.json_members);
  w.field("method", e.method);
  w.field("path", without_query(e.path));
  w.field("fhir_resource", e.fhir_resource);
  w.field("fhir_interaction", e.fhir_interaction);
  w.field("fhir_operation", e.fhir_operation);
  w.field("decision", e.decision);
  w.field("rule", e.rule);
  w.field("mode", e.mode);
  w.field("reason", e.reason);
  w.field("status", e.status);
  w.field("bytes_in", e.bytes_in);
  w.field("bytes_out", e.bytes_out);
  w.field("duration_ms", e.duration_ms);
  w.end_object();
}

void append_json_line(std::string& out, const AuditEvent& e) {
  Rfc3339MsFormatter time;
  append_json_line(out, e, time);
}

std::string to_json_line(const AuditEvent& e) {
  std::string out;
  out.reserve(512);
  append_json_line(out, e);
  return out;
}

void append_fhir_audit_event(std::string& out, const AuditEvent& e, Rfc3339MsFormatter& time) {
  const AuditPeer& peer = peer_of(e);
  JsonWriter w(out);
  w.begin_object();
  w.field("resourceType", "AuditEvent");
  w.key("type").begin_object();
  w.field("system", "http://terminology.hl7.org/CodeSystem/audit-event-type");
  w.field("code", "rest");
  w.field("display", "RESTful Operation");
  w.end_object();
  if (is_restful_interaction(e.fhir_interaction)) {
    w.key("subtype").begin_array().begin_object();
    w.field("system", "http://hl7.org/fhir/restful-interaction");
    w.field("code", e.fhir_interaction);
    w.end_object().end_array();
  }
  w.field("action", action_code(e.fhir_interaction, e.method));
  w.field("recorded", time.format(e.time));
  w.field("outcome", outcome_code(e));
  // "allow (rule read-clinical, enforce): reason"; the parts meet at ASCII separators, so escaping
  // them one by one gives the bytes of escaping the whole description.
  w.key("outcomeDesc");
  if (e.reason.empty()) {
    w.value_concat({e.decision, " (rule ", e.rule, ", ", e.mode, ")"});
  } else {
    w.value_concat({e.decision, " (rule ", e.rule, ", ", e.mode, "): ", e.reason});
  }

  w.key("agent").begin_array().begin_object();
  w.field("requestor", true);
  w.key("who").begin_object();
  if (!peer.fingerprint.empty()) {
    w.key("identifier").begin_object();
    w.key("type")
        .begin_object()
        .field("text", "X.509 certificate SHA-256 fingerprint")
        .end_object();
    w.field("value", peer.fingerprint);
    w.end_object();
  }
  w.field("display", peer.subject.empty() ? std::string_view("anonymous") : peer.subject);
  w.end_object();
  if (!peer.hipaa.empty()) {
    w.key("role").begin_array();
    for (const auto& h : peer.hipaa) w.begin_object().field("text", h).end_object();
    w.end_array();
  }
  if (const std::string_view address = client_address_of(e); !address.empty()) {
    w.key("network").begin_object();
    w.field("address", address);
    w.field("type", "2");  // 2 = IP address
    w.end_object();
  }
  w.end_object().end_array();

  w.key("source").begin_object();
  w.key("observer").begin_object().field("display", "fhir-mtls-proxy").end_object();
  w.key("type").begin_array().begin_object();
  w.field("system", "http://terminology.hl7.org/CodeSystem/security-source-type");
  w.field("code", "4");
  w.field("display", "Application Server");
  w.end_object().end_array();
  w.end_object();

  w.key("entity").begin_array().begin_object();
  w.key("what").begin_object().field("display", without_query(e.path)).end_object();
  w.key("type").begin_object();
  w.field("system", "http://terminology.hl7.org/CodeSystem/audit-entity-type");
  w.field("code", "2");
  w.field("display", "System Object");
  w.end_object();
  w.key("detail").begin_array();
  auto detail = [&w](std::string_view type, std::string_view value) {
    if (!value.empty())
      w.begin_object().field("type", type).field("valueString", value).end_object();
  };
  NumberText number;
  detail("method", e.method);
  detail("fhir-resource", e.fhir_resource);
  detail("fhir-operation", e.fhir_operation);
  detail("decision", e.decision);
  detail("rule", e.rule);
  detail("mode", e.mode);
  detail("status", number.integer(e.status));
  detail("trust", peer.trust);
  for (const auto& uri : peer.san_uri) detail("san-uri", uri);
  detail("connection-id", number.integer(e.connection_id));
  detail("request-id", number.integer(e.request_id));
  detail("bytes-in", number.integer(e.bytes_in));
  detail("bytes-out", number.integer(e.bytes_out));
  detail("duration-ms", number.fixed3(e.duration_ms));
  w.end_array();
  w.end_object().end_array();
  w.end_object();
}

std::string to_fhir_audit_event(const AuditEvent& e) {
  std::string out;
  out.reserve(1536);
  Rfc3339MsFormatter time;
  append_fhir_audit_event(out, e, time);
  return out;
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

void release_held_parts(AuditEvent& e) {
  e.peer.reset();
  e.client_address.reset();
  for (std::string* s : {&e.method, &e.path, &e.fhir_resource, &e.fhir_interaction,
                         &e.fhir_operation, &e.decision, &e.rule, &e.mode, &e.reason}) {
    if (s->capacity() > kKeptAuditFieldBytes) std::string().swap(*s);
  }
}

bool AuditLog::write(const AuditEvent& event) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_length_ >= capacity_) {
      // Unhealthy until the writer's next batch: audit.on_failure applies meanwhile.
      if (!stopping_) healthy_ = false;
      ++dropped_;
      if (metrics_ != nullptr) metrics_->count_audit_dropped();
      return false;
    }
    // Copied into a slot an earlier batch used: its strings' storage is reused, so a steady
    // stream of events allocates nothing.
    if (queue_length_ == queue_.size()) {
      queue_.push_back(event);
    } else {
      queue_[queue_length_] = event;
    }
    ++queue_length_;
    ++queued_;
    // Wake the writer for the first event of a batch and when a batch is large; in between it
    // gathers events for kBatchDelay, so a busy proxy wakes it ~50 times a second, not per request.
    if (queue_length_ != 1 && queue_length_ != kUrgentBatch) return true;
    if (queue_length_ == kUrgentBatch) urgent_ = true;
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
  std::vector<AuditEvent> batch;  // slots: the first `length` hold this batch's events
  std::string out;                // reused: the lines of one batch
  Rfc3339MsFormatter time;        // events of a batch mostly share their second
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock,
               [&] { return stopping_ || queue_length_ > 0 || reopen_requested_ != reopen_done_; });
    // Gather a batch: more events arrive while the writer waits; flush(), stop, reopen and a large
    // batch cut the wait short.
    wake_.wait_for(lock, kBatchDelay,
                   [&] { return stopping_ || urgent_ || reopen_requested_ != reopen_done_; });
    urgent_ = false;
    if (stopping_ && queue_length_ == 0 && reopen_requested_ == reopen_done_) return;
    const std::uint64_t reopen_target = reopen_requested_;
    const bool want_reopen = reopen_target != reopen_done_;
    // The slots swap sides: the data path fills the ones this writer emptied last time.
    batch.swap(queue_);
    const std::size_t length = queue_length_;
    queue_length_ = 0;
    lock.unlock();

    // Reopen before writing the batch: every event queued after reopen() returned is in this batch
    // or a later one, so it lands in the new file. A failed reopen is retried with every batch.
    if (want_reopen || reopen_failing_) reopen_failing_ = !do_reopen();

    out.clear();
    std::uint64_t unformatted = 0;
    for (std::size_t i = 0; i < length; ++i) {
      AuditEvent& e = batch[i];
      const std::size_t line_start = out.size();
      try {
        if (format_ == AuditFormat::kFhir) {
          append_fhir_audit_event(out, e, time);
        } else {
          append_json_line(out, e, time);
        }
        out += '\n';
      } catch (const std::exception&) {  // allocation failure: drop the partial line, count it lost
        out.resize(line_start);
        ++unformatted;
      }
      // A slot keeps its strings' storage, not the identity or address it referred to.
      release_held_parts(e);
    }
    const bool write_ok = out.empty() || write_all(out);
    const std::uint64_t lost = write_ok ? unformatted : length;
    if (metrics_ != nullptr) {
      for (std::uint64_t i = 0; i < lost; ++i) metrics_->count_audit_write_error();
    }
    // After a burst (the writer fell behind), the slots and the line buffer go back to a usual
    // batch's size.
    if (batch.size() > kKeptSlots) {
      batch.resize(kKeptSlots);
      batch.shrink_to_fit();
    }
    if (out.capacity() > kKeptSlots * 1024) std::string().swap(out);

    lock.lock();
    if (want_reopen) reopen_done_ = reopen_target;
    if (length > 0) last_write_ok_ = write_ok && lost == 0;
    healthy_ = last_write_ok_ && !reopen_failing_;
    write_errors_ += lost;
    processed_ += length;
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
