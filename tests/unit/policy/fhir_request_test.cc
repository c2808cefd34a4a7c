// Interaction spellings of the policy language.
#include "policy/fhir_request.h"

#include <doctest/doctest.h>

#include <set>
#include <string>

namespace fmp::policy {

TEST_CASE("to_string and parse_interaction round-trip every interaction") {
  const Interaction all[] = {
      Interaction::kNone,        Interaction::kUnknown,  Interaction::kCapabilities,
      Interaction::kRead,        Interaction::kVread,    Interaction::kSearch,
      Interaction::kHistory,     Interaction::kCreate,   Interaction::kUpdate,
      Interaction::kPatch,       Interaction::kDelete,   Interaction::kBatch,
      Interaction::kTransaction, Interaction::kOperation};
  std::set<std::string> names;
  for (Interaction i : all) {
    const std::string name(to_string(i));
    CAPTURE(name);
    names.insert(name);
    Interaction parsed = Interaction::kNone;
    REQUIRE(parse_interaction(name, parsed));
    CHECK(parsed == i);
  }
  CHECK(names.size() == std::size(all));
}

TEST_CASE("the contract's spellings") {
  CHECK(to_string(Interaction::kCapabilities) == "capabilities");
  CHECK(to_string(Interaction::kVread) == "vread");
  CHECK(to_string(Interaction::kTransaction) == "transaction");
  CHECK(to_string(Interaction::kNone) == "none");
  CHECK(to_string(Interaction::kUnknown) == "unknown");
}

TEST_CASE("parse_interaction refuses other spellings and leaves the output alone") {
  Interaction out = Interaction::kRead;
  CHECK_FALSE(parse_interaction("Read", out));
  CHECK_FALSE(parse_interaction("READ", out));
  CHECK_FALSE(parse_interaction("", out));
  CHECK_FALSE(parse_interaction("read ", out));
  CHECK_FALSE(parse_interaction("search-type", out));
  CHECK(out == Interaction::kRead);
}

}  // namespace fmp::policy
