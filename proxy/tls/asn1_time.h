// ASN1_TIME as unix seconds.
#pragma once

#include <openssl/asn1.h>

#include <ctime>

namespace fmp::proxy::tls {

/// Seconds since the epoch (UTC) of `t`; 0 when `t` is null or malformed.
std::time_t asn1_to_time_t(const ASN1_TIME* t);

}  // namespace fmp::proxy::tls
