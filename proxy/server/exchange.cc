#include "proxy/server/exchange.h"

#include <algorithm>
#include <cstdint>
#include <utility>

namespace fmp::proxy::server {

Exchange::Exchange(http::HeadStorage& storage)
    : request(http::MessageParser::Kind::kRequest, 0, 0, &storage),
      response(http::MessageParser::Kind::kResponse, 0, SIZE_MAX, &storage) {}

std::unique_ptr<Exchange> ExchangePool::take(std::size_t max_header_bytes,
                                             std::size_t max_body_bytes) {
  std::unique_ptr<Exchange> ex;
  if (spares_.empty()) {
    ex = std::make_unique<Exchange>(storage_);
  } else {
    ex = std::move(spares_.back());
    spares_.pop_back();
  }
  ex->request.set_limits(max_header_bytes, max_body_bytes);
  ex->response.set_limits(std::max<std::size_t>(max_header_bytes, 65536), SIZE_MAX);
  return ex;
}

namespace {

/// Emptied, its storage kept for the next request unless it grew past kKeptStringCapacity.
void empty(std::string& s) {
  if (s.capacity() > ExchangePool::kKeptStringCapacity) {
    std::string().swap(s);
  } else {
    s.clear();
  }
}

/// Back to a default-constructed value, the strings' storage kept for the next request (the
/// classification and the decision are written into it with assign/clear). A Bundle's entries
/// are freed: they are not kept while idle.
void clear_keeping_storage(policy::FhirRequest& r) {
  empty(r.method);
  empty(r.path);
  r.interaction = policy::Interaction::kNone;
  empty(r.resource);
  empty(r.id);
  empty(r.version);
  empty(r.operation);
  std::vector<policy::FhirRequest>().swap(r.entries);
  empty(r.bundle_error);
}

void clear_keeping_storage(policy::Decision& d) {
  d.effect = policy::Effect::kDeny;
  empty(d.rule);
  d.rule.assign("default");
  d.mode = policy::Mode::kEnforce;
  empty(d.reason);
  d.shadow.clear();
}

}  // namespace

void ExchangePool::give(std::unique_ptr<Exchange> ex) {
  if (!ex) return;
  ex->request.reset();
  ex->request.release();
  ex->response.reset();
  ex->response.release();
  // Nothing of this request is left for the next one, which may be another connection's.
  empty(ex->path);
  empty(ex->query);
  clear_keeping_storage(ex->fhir);
  clear_keeping_storage(ex->decision);
  ex->body.clear();
  ex->upstream_head.clear();
  // A buffered Bundle may have grown the body buffer to max_body_bytes: not kept while idle.
  if (ex->body.capacity() > kKeptBodyCapacity) std::string().swap(ex->body);
  if (ex->upstream_head.capacity() > http::HeadStorage::kMaxBufferBytes)
    std::string().swap(ex->upstream_head);
  if (spares_.size() >= kMaxSpares) return;  // freed here
  if (spares_.capacity() == 0) spares_.reserve(kMaxSpares);
  spares_.push_back(std::move(ex));
}

}  // namespace fmp::proxy::server
