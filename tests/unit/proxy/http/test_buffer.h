// Helpers shared by the proxy/http unit tests: an owned evbuffer holding given bytes.
#pragma once

#include <event2/buffer.h>

#include <memory>
#include <string>
#include <string_view>

namespace fmp::proxy::http::testing {

struct BufferDeleter {
  void operator()(evbuffer* b) const { evbuffer_free(b); }
};
using Buffer = std::unique_ptr<evbuffer, BufferDeleter>;

/// A new evbuffer holding `bytes`.
inline Buffer buffer_of(std::string_view bytes) {
  Buffer b(evbuffer_new());
  evbuffer_add(b.get(), bytes.data(), bytes.size());
  return b;
}

/// Everything left in `b`, without draining it.
inline std::string contents(evbuffer* b) {
  std::string out(evbuffer_get_length(b), '\0');
  evbuffer_copyout(b, out.data(), out.size());
  return out;
}

}  // namespace fmp::proxy::http::testing
