// The audit log: one record per decided request (policy decision or 401), written off the data path
// by a writer thread. Never the body, never the query string.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace fmp::proxy::observability {

class Metrics;

/// Who is on the other end of a connection: derived once per client certificate and shared by
/// every audited request of every connection presenting it (no per-request string copies).
struct AuditPeer {
  std::string subject;               ///< RFC 4514 subject DN; "" for anonymous
  std::vector<std::string> san_uri;  ///< SAN URIs of the leaf
  std::string fingerprint;           ///< lowercase hex SHA-256 of the DER leaf
  std::string trust;                 ///< trust community that verified the chain
  std::vector<std::string> hipaa;    ///< HIPAA categories
  /// The fields above as append_json_line() writes them ("subject" to "hipaa", no braces), made
  /// once by prepare_audit_peer() so each record copies them instead of escaping them again.
  /// Empty: written field by field.
  std::string json_members;
};

/// Fills peer.json_members from the peer's fields (call after setting them, before sharing).
void prepare_audit_peer(AuditPeer& peer);

/// One audited request. Strings are copied as given; the serialisers replace invalid UTF-8
/// (certificate fields can carry anything) rather than fail.
struct AuditEvent {
  std::chrono::system_clock::time_point time;  ///< when the request was decided
  std::uint64_t connection_id = 0;
  std::uint64_t request_id = 0;
  std::shared_ptr<const AuditPeer> peer;              ///< null: written as an anonymous peer
  std::shared_ptr<const std::string> client_address;  ///< "ip:port" of the client; null: none
  std::string method;
  std::string path;  ///< path only: the caller strips the query; to_json_line also cuts at '?'
  std::string fhir_resource;
  std::string fhir_interaction;  ///< policy::to_string(Interaction)
  std::string fhir_operation;    ///< "$everything" etc., "" when none
  std::string decision;          ///< "allow" | "deny" | "shadow_allow" | "shadow_deny"
  std::string rule;              ///< deciding rule, "default" when none matched
  std::string mode;              ///< "enforce" | "shadow"
  std::string reason;          ///< why, when useful (e.g. "no rule matched", "certificate expired")
  int status = 0;              ///< status sent downstream (upstream's, or the proxy's error status)
  std::uint64_t bytes_in = 0;  ///< request body bytes received
  std::uint64_t bytes_out = 0;  ///< response body bytes sent
  double duration_ms = 0;
};

/// Empties what a kept AuditEvent (a reused slot or scratch event) should not hold on to: its
/// references to the peer and the address, and any string grown past kKeptAuditFieldBytes (a long
/// path, a reason quoting a request). Smaller strings keep their storage for the next event.
constexpr std::size_t kKeptAuditFieldBytes = 4096;
void release_held_parts(AuditEvent& e);

/// RFC 3339 UTC with milliseconds: "2026-11-23T14:37:17.123Z". Times before 1970 are floored to
/// the millisecond ("1969-12-31T23:59:59.999Z" for -1 ms).
std::string format_rfc3339_ms(std::chrono::system_clock::time_point t);

/// format_rfc3339_ms for a stream of increasing times: keeps the "YYYY-MM-DDTHH:MM:SS" prefix of
/// the last whole second, so only an event in a new second pays for the calendar conversion. Same
/// output as format_rfc3339_ms for every input. Not thread-safe: one per writer.
class Rfc3339MsFormatter {
 public:
  /// The formatted time; valid until the next call on this formatter.
  std::string_view format(std::chrono::system_clock::time_point t);

 private:
  static constexpr std::size_t kMaxLength = 64;
  char buf_[kMaxLength] = {};
  std::size_t prefix_length_ = 0;  ///< 0: nothing cached yet
  std::int64_t second_ = 0;        ///< the whole second (since the epoch) of the cached prefix
};

/// Appends the event as one JSON object, no newline. Fields, in this order: time, connection_id,
/// request_id, client, subject, san_uri, fingerprint, trust, hipaa, method, path, fhir_resource,
/// fhir_interaction, fhir_operation, decision, rule, mode, reason, status, bytes_in, bytes_out,
/// duration_ms. Every field is always present; strings with invalid UTF-8 get U+FFFD instead;
/// duration_ms is a finite JSON number (0.0 for NaN/infinity).
void append_json_line(std::string& out, const AuditEvent& e);
/// The same, with the caller's time formatter (the writer thread keeps one).
void append_json_line(std::string& out, const AuditEvent& e, Rfc3339MsFormatter& time);

/// append_json_line into a new string.
std::string to_json_line(const AuditEvent& e);

/// Appends the same event as a FHIR R4 AuditEvent resource (compact JSON, no newline): type rest,
/// subtype the restful interaction, action C/R/U/D/E, outcome 0 (allowed and < 400), 4 (denied or
/// 4xx), 8 (5xx); the client as the requesting agent, the proxy as the source observer, the path as
/// the entity.
void append_fhir_audit_event(std::string& out, const AuditEvent& e, Rfc3339MsFormatter& time);

/// append_fhir_audit_event into a new string.
std::string to_fhir_audit_event(const AuditEvent& e);

enum class AuditFormat { kJson, kFhir };
/// "json" | "fhir"; false for anything else.
bool parse_audit_format(const std::string& s, AuditFormat& out);

/// An append-only audit file (or stdout) fed through a bounded queue by one writer thread, so the
/// data path never waits on the disk. Thread-safe.
class AuditLog {
 public:
  static constexpr std::size_t kDefaultCapacity = 65536;
  /// Queue length at which the writer is woken before its batching delay ends.
  static constexpr std::size_t kUrgentBatch = 1024;
  /// Event slots kept by each side after a batch larger than this (a burst the writer fell
  /// behind on) is written.
  static constexpr std::size_t kKeptSlots = 2 * kUrgentBatch;

  /// Opens `path` for appending ("-" = stdout) and starts the writer. `metrics` (may be null, must
  /// outlive the log) counts dropped events and write errors. Throws std::runtime_error naming the
  /// path when it cannot be opened (configuration time).
  static std::unique_ptr<AuditLog> open(const std::string& path, AuditFormat format,
                                        Metrics* metrics = nullptr,
                                        std::size_t capacity = kDefaultCapacity);

  /// Flushes every queued event, then joins the writer.
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  /// Queues a copy of the event; never waits for I/O. False when the queue is full: the event is
  /// dropped and counted (the caller applies audit.on_failure). The copy goes into a slot an
  /// earlier event used, reusing its strings' storage: a caller that also reuses its AuditEvent
  /// allocates nothing per event.
  bool write(const AuditEvent& event);

  /// Asks the writer to reopen the path (after logrotate moved the file); returns at once. Events
  /// queued before the call may still go to the old file; events queued after flush() returns go to
  /// the new one.
  void reopen();

  /// Blocks until every event queued before the call is written (or failed) and every requested
  /// reopen is done. For shutdown paths and tests.
  void flush();

  /// False while the last write failed (disk full, unwritable) or a requested reopen has not
  /// succeeded yet (the writer keeps appending to the old file and retries the reopen with every
  /// batch), and from a write() that found the queue full until the writer's next batch is done.
  bool healthy() const;

  std::uint64_t dropped() const;
  std::uint64_t write_errors() const;  ///< events lost to failed writes

 private:
  AuditLog(std::string path, AuditFormat format, Metrics* metrics, std::size_t capacity, int fd);
  void run();
  bool write_all(const std::string& data);
  bool do_reopen();

  const std::string path_;
  const AuditFormat format_;
  Metrics* const metrics_;
  const std::size_t capacity_;
  int fd_;  ///< owned unless path_ is "-" (stdout); only the writer thread touches it after
            ///< construction

  mutable std::mutex mutex_;
  std::condition_variable wake_;   ///< writer: events, reopen or stop
  std::condition_variable done_;   ///< flush(): progress
  std::vector<AuditEvent> queue_;  ///< slots: the first queue_length_ hold queued events
  std::size_t queue_length_ = 0;
  std::uint64_t queued_ = 0;     ///< events accepted so far
  std::uint64_t processed_ = 0;  ///< events written or failed so far
  std::uint64_t reopen_requested_ = 0;
  std::uint64_t reopen_done_ = 0;
  bool stopping_ = false;
  bool urgent_ = false;  ///< flush() or a full batch: write now instead of after the batching delay
  bool healthy_ = true;
  bool last_write_ok_ = true;    ///< writer thread only
  bool reopen_failing_ = false;  ///< writer thread only
  std::uint64_t dropped_ = 0;
  std::uint64_t write_errors_ = 0;
  std::thread writer_;  ///< last: started after every other member exists
};

}  // namespace fmp::proxy::observability
