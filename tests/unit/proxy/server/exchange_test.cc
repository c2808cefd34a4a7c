#include "proxy/server/exchange.h"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "policy/fhir_classify.h"
#include "policy/policy_loader.h"
#include "tests/unit/proxy/allocation_count.h"
#include "tests/unit/proxy/http/test_buffer.h"

namespace srv = fmp::proxy::server;
namespace http = fmp::proxy::http;

TEST_CASE("ExchangePool: a given-back exchange is reused empty, with the taker's limits") {
  http::HeadStorage storage;
  srv::ExchangePool pool(storage);
  std::unique_ptr<srv::Exchange> ex = pool.take(1024, 1000);
  const srv::Exchange* first = ex.get();
  ex->path = "/fhir/Patient/a-long-enough-id-to-leave-the-inline-buffer";
  ex->query = "_count=10";
  ex->fhir.method = "POST";
  ex->fhir.path = "/fhir";
  ex->fhir.interaction = fmp::policy::Interaction::kTransaction;
  ex->fhir.resource = "Patient";
  ex->fhir.id = "1";
  ex->fhir.version = "2";
  ex->fhir.operation = "$everything";
  ex->fhir.entries.resize(3);
  ex->fhir.bundle_error.assign(srv::ExchangePool::kKeptStringCapacity + 1, 'e');
  ex->decision.effect = fmp::policy::Effect::kAllow;
  ex->decision.mode = fmp::policy::Mode::kShadow;
  ex->decision.rule = "partner-read";
  ex->decision.reason = "rule partner-read matched";
  ex->decision.shadow.push_back({"s", fmp::policy::Effect::kAllow});
  ex->body.assign(100, 'b');
  ex->upstream_head = "GET /fhir/Patient/1 HTTP/1.1\r\n\r\n";
  const auto head = http::testing::buffer_of("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(ex->response.read_head(head.get()) == http::MessageParser::Status::kDone);
  const auto req = http::testing::buffer_of("GET /fhir/Patient/1 HTTP/1.1\r\nHost: a\r\n\r\n");
  REQUIRE(ex->request.read_head(req.get()) == http::MessageParser::Status::kDone);
  pool.give(std::move(ex));
  CHECK(pool.spares() == 1);
  CHECK(storage.spare_bytes() == 2);  // both parsers' head buffers went to the storage

  // The next request, perhaps another connection's, sees nothing of the last one.
  std::unique_ptr<srv::Exchange> again = pool.take(64, 10);
  CHECK(again.get() == first);
  CHECK(pool.spares() == 0);
  CHECK(again->path.empty());
  CHECK(again->query.empty());
  CHECK(again->fhir.method.empty());
  CHECK(again->fhir.path.empty());
  CHECK(again->fhir.interaction == fmp::policy::Interaction::kNone);
  CHECK(again->fhir.resource.empty());
  CHECK(again->fhir.id.empty());
  CHECK(again->fhir.version.empty());
  CHECK(again->fhir.operation.empty());
  CHECK(again->fhir.entries.empty());
  CHECK(again->fhir.entries.capacity() == 0);  // a Bundle's entries are not kept
  CHECK(again->fhir.bundle_error.empty());
  CHECK(again->fhir.bundle_error.capacity() <= srv::ExchangePool::kKeptStringCapacity);
  CHECK(again->decision.effect == fmp::policy::Effect::kDeny);  // fails closed if left unset
  CHECK(again->decision.mode == fmp::policy::Mode::kEnforce);
  CHECK(again->decision.rule == "default");
  CHECK(again->decision.reason.empty());
  CHECK(again->decision.shadow.empty());
  CHECK(again->body.empty());
  CHECK(again->body.capacity() >= 100);  // capacity kept for reuse
  CHECK(again->upstream_head.empty());
  CHECK(again->response.head().headers.empty());
  CHECK(again->request.head().headers.empty());
  CHECK(again->request.head().method.empty());
  // Its request parser has the new limits: this head is longer than 64 bytes.
  const auto big = http::testing::buffer_of(
      "GET /fhir/Patient/1 HTTP/1.1\r\nX-Pad: " + std::string(64, 'p') + "\r\n\r\n");
  CHECK(again->request.read_head(big.get()) == http::MessageParser::Status::kError);
  CHECK(again->request.error() == http::ParseError::kHeadersTooLarge);
  // The response parser takes at least 64 KiB of head whatever the clients' limit.
  const auto reply = http::testing::buffer_of(
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: " + std::string(1000, 'p') + "\r\n\r\n");
  CHECK(again->response.read_head(reply.get()) == http::MessageParser::Status::kDone);
}

TEST_CASE("ExchangePool: large bodies are not kept, and at most kMaxSpares exchanges") {
  http::HeadStorage storage;
  srv::ExchangePool pool(storage);
  auto ex = pool.take(1024, 1000);
  ex->body.assign(srv::ExchangePool::kKeptBodyCapacity + 1, 'b');
  pool.give(std::move(ex));
  CHECK(pool.take(1024, 1000)->body.capacity() <= srv::ExchangePool::kKeptBodyCapacity);

  std::vector<std::unique_ptr<srv::Exchange>> taken;
  for (std::size_t i = 0; i < srv::ExchangePool::kMaxSpares + 3; ++i)
    taken.push_back(pool.take(1024, 1000));
  for (auto& e : taken) pool.give(std::move(e));
  CHECK(pool.spares() == srv::ExchangePool::kMaxSpares);
  pool.give(nullptr);  // nothing to give: no effect
  CHECK(pool.spares() == srv::ExchangePool::kMaxSpares);
}

#ifndef FMP_SANITIZED_NEW
namespace {

fmp::policy::Identity partner_identity() {
  fmp::policy::Identity id;
  id.present = true;
  id.subject.attributes = {{"CN", "ehr"}, {"O", "Example Hospital"}};
  id.fingerprint_sha256 = std::string(64, 'a');
  return id;
}

}  // namespace

TEST_CASE("ExchangePool: classifying and deciding into a reused exchange allocates nothing") {
  // As the proxy decides a request: classify_into and evaluate_into the borrowed exchange.
  const auto policy = fmp::policy::load_policy_text(R"(rules:
  - {name: deny-deletes-of-anything-at-all, effect: deny, when: {method: DELETE}}
  - {name: partner-applications-may-read-patients, effect: allow, when: {fhir: {resource: Patient}}}
)",
                                                    "test.yaml");
  const fmp::policy::Identity id = partner_identity();
  const auto prepared = policy->prepare(id);
  http::HeadStorage storage;
  srv::ExchangePool pool(storage);
  const std::string paths[] = {"/fhir/Patient/a-long-enough-id-to-leave-the-inline-buffer",
                               "/fhir/Patient/1", "/fhir/Observation/2"};
  const auto one_request = [&](int i) {
    std::unique_ptr<srv::Exchange> ex = pool.take(1024, 1000);
    ex->path.assign(paths[i % 3]);
    fmp::policy::classify_into(i % 2 == 0 ? "GET" : "DELETE", ex->path, "", "/fhir", "", "",
                               ex->fhir);
    policy->evaluate_into(id, ex->fhir, prepared.get(), ex->decision);
    const bool ok = ex->decision.rule == (i % 2 == 0 ? "partner-applications-may-read-patients"
                                                     : "deny-deletes-of-anything-at-all");
    pool.give(std::move(ex));
    return ok || i % 3 == 2;  // Observation reads fall to the default
  };
  for (int i = 0; i < 6; ++i) REQUIRE(one_request(i));  // every string grows once
  int decided = 0;
  std::size_t allocated = 0;
  {
    fmp::proxy::testing::AllocationCount count;
    for (int i = 0; i < 60 && one_request(i); ++i) ++decided;
    allocated = count.stop();
  }
  CHECK(decided == 60);
  CHECK(allocated == 0);
}

TEST_CASE("evaluate_into denies when an allocation fails at any point, even over a stale allow") {
  // A transaction Bundle whose every entry the policy allows: only a failure can make it a denial.
  const auto policy = fmp::policy::load_policy_text(R"(rules:
  - {name: partner-applications-may-post-transactions, effect: allow,
     when: {fhir: {interaction: [transaction]}}}
  - {name: partner-applications-may-write-patients, effect: allow,
     when: {fhir: {resource: Patient, interaction: [create, update]}}}
)",
                                                    "test.yaml");
  const fmp::policy::Identity id = partner_identity();
  const auto prepared = policy->prepare(id);
  fmp::policy::FhirRequest request;
  fmp::policy::classify_into("POST", "/fhir", "", "/fhir", "application/fhir+json",
                             R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
      {"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient/1"}},
      {"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]})",
                             request);
  REQUIRE(request.entries.size() == 3);
  REQUIRE(policy->evaluate(id, request, prepared.get()).allowed());

  std::size_t failures = 0;
  for (std::size_t n = 0; n < 1000; ++n) {
    // As the proxy reuses an exchange: the decision left by an earlier request is an allow.
    fmp::policy::Decision decision;
    decision.effect = fmp::policy::Effect::kAllow;
    bool threw = false;
    bool reached = false;
    {
      fmp::proxy::testing::AllocationFailure fail(n);
      try {
        policy->evaluate_into(id, request, prepared.get(), decision);
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      reached = fail.stop();
    }
    if (!reached) {  // every allocation point has failed once: this run completed
      CHECK_FALSE(threw);
      CHECK(decision.allowed());
      break;
    }
    ++failures;
    CAPTURE(n);
    CHECK(threw);
    CHECK(decision.effect == fmp::policy::Effect::kDeny);
  }
  CHECK(failures > 0);  // the evaluation allocates, so the failure path was taken
}
#endif
