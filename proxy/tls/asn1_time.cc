#include "proxy/tls/asn1_time.h"

namespace fmp::proxy::tls {

std::time_t asn1_to_time_t(const ASN1_TIME* t) {
  if (t == nullptr) return 0;
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

}  // namespace fmp::proxy::tls
