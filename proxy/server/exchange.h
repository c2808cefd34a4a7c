// The per-request state of a client connection, borrowed from its worker for one exchange.
//
// What a request needs — the parser of its head, its path and query, its FHIR classification, the
// decision, a buffered body, the head forwarded upstream and the parser for the upstream's response
// — is held only while the exchange runs: a connection takes an Exchange from its worker's
// ExchangePool when a request's bytes arrive and gives it back when the response is done. An idle
// kept-alive connection therefore holds none of it, and a busy worker reuses the same few Exchanges
// (with their buffers' capacity) without allocating.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "policy/decision.h"
#include "policy/fhir_request.h"
#include "proxy/http/head_storage.h"
#include "proxy/http/message_parser.h"

namespace fmp::proxy::server {

struct Exchange {
  explicit Exchange(http::HeadStorage& storage);

  http::MessageParser request;   ///< the client's request
  http::MessageParser response;  ///< the upstream's response
  std::string path;              ///< the request path, percent-decoded and checked
  std::string query;
  policy::FhirRequest fhir;
  policy::Decision decision;
  std::string body;           ///< a body the policy reads (bounded by max_body_bytes)
  std::string upstream_head;  ///< the forwarded head, kept for one retry on a stale connection
};

/// One worker's spare Exchanges. Not thread-safe (one worker's thread).
class ExchangePool {
 public:
  /// Spares kept; more given back are freed.
  static constexpr std::size_t kMaxSpares = 256;
  /// A body buffer larger than this is freed when its exchange is given back.
  static constexpr std::size_t kKeptBodyCapacity = 16 * 1024;
  /// Any other string larger than this (a long path, a Bundle error quoting the body) is freed.
  static constexpr std::size_t kKeptStringCapacity = 4096;

  explicit ExchangePool(http::HeadStorage& storage) : storage_(storage) {}

  /// An exchange in its initial state (empty fields, capacity kept) whose request parser has the
  /// connection's limits; its response parser accepts heads of up to max(max_header_bytes, 64 KiB)
  /// (an upstream's head may be larger than what clients may send) and bodies of any size.
  std::unique_ptr<Exchange> take(std::size_t max_header_bytes, std::size_t max_body_bytes);
  /// Takes back an exchange whose request is over: its parsers are reset and its fields emptied
  /// (nothing of one request reaches the next, which may be another connection's), and its head
  /// buffers go to the HeadStorage.
  void give(std::unique_ptr<Exchange> ex);

  std::size_t spares() const { return spares_.size(); }

 private:
  http::HeadStorage& storage_;
  std::vector<std::unique_ptr<Exchange>> spares_;
};

}  // namespace fmp::proxy::server
