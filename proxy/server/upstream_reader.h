// Reading a plain upstream socket without asking the kernel first how much is waiting.
//
// libevent's socket bufferevent makes an ioctl(FIONREAD) before every read to size its buffer,
// and reads at most 4 KiB per readable event: one system call per upstream response that tells
// it nothing a read would not, and small reads for a large body. For a plain TCP upstream
// connection the proxy gives the bufferevent's read event its own callback. It reads into space
// sized from the connection's recent reads, kept as the bufferevent's max single read: 4 KiB,
// doubled after a read that filled it (up to 64 KiB, for a stream), halved after one that used
// under a quarter. Then it does what libevent's reader does: the read callback (when the input
// reaches the low watermark), or on end of file, error or timeout, reading disabled and the event
// callback with BEV_EVENT_READING and the cause. A refused connect is reported the same way
// (READING|ERROR) where libevent leaves it to its write callback (ERROR); the proxy treats both
// alike. Not supported, as the proxy uses none on upstreams: a read high watermark, rate limits,
// BEV_OPT_THREADSAFE. Everything else (enable/disable, timeouts, writes, connect) stays
// libevent's.
//
// This relies on libevent 2.1's bufferevent layout (event2/bufferevent_struct.h), on
// bufferevent_socket_connect() being what assigns libevent's own read callback, and on libevent's
// finalizer taking the read event's argument as the bufferevent: the integration tests of the
// upstream paths (streaming, resets, timeouts, pooled connections) run through it.
#pragma once

struct bufferevent;

namespace fmp::proxy::server {

/// Installs the reader on a socket bufferevent. Call it after bufferevent_socket_connect(), which
/// assigns libevent's own read callback again. Reading stays enabled or disabled as it was.
void read_without_fionread(bufferevent* bev);

}  // namespace fmp::proxy::server
