// std::unique_ptr aliases for every libevent handle the proxy owns. One place for the deleters, so
// no code path frees by hand. Destruction order matters with libevent: free every event,
// bufferevent, listener and evhttp before the event_base they belong to (declare the base first in
// a class, so it is destroyed last).
#pragma once

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include <memory>

namespace fmp::ev {  // not fmp::event: that would hide libevent's `struct event` inside fmp

template <auto Fn>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Fn(p);
  }
};

using EventBasePtr = std::unique_ptr<event_base, Deleter<event_base_free>>;
using EventConfigPtr = std::unique_ptr<event_config, Deleter<event_config_free>>;
using EventPtr = std::unique_ptr<::event, Deleter<event_free>>;
using BufferEventPtr = std::unique_ptr<bufferevent, Deleter<bufferevent_free>>;
using EvConnListenerPtr = std::unique_ptr<evconnlistener, Deleter<evconnlistener_free>>;
using EvBufferPtr = std::unique_ptr<evbuffer, Deleter<evbuffer_free>>;
/// evhttp lives in libevent_extra: a target using this alias must link it.
using EvHttpPtr = std::unique_ptr<evhttp, Deleter<evhttp_free>>;
using EvHttpUriPtr = std::unique_ptr<evhttp_uri, Deleter<evhttp_uri_free>>;

}  // namespace fmp::ev
