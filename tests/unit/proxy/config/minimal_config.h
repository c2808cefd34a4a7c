// The smallest valid proxy.yaml, shared by the config tests. Line numbers: 1 listen, 2 tls, 3 cert,
// 4 key, 5 trust, 6 - name, 7 ca, 8 upstream, 9 url, 10 policy; line 11 is the first line after it.
#pragma once

#include <string>

namespace fmp::proxy::testing {

inline const std::string kMinimalConfig =
    "listen: \"127.0.0.1:8443\"\n"
    "tls:\n"
    "  cert: server.pem\n"
    "  key: server.key\n"
    "  trust:\n"
    "    - name: dt\n"
    "      ca: dt-ca.pem\n"
    "upstream:\n"
    "  url: \"http://127.0.0.1:8080\"\n"
    "policy: policy.yaml\n";

}  // namespace fmp::proxy::testing
