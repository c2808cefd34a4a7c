// Reading a plain upstream socket without asking the kernel first how much is waiting.
//
// libevent's socket bufferevent makes an ioctl(FIONREAD) before every read to size its buffer:
// one system call per upstream response (a fifth of the proxy's per request) that tells it
// nothing a read would not. For a plain TCP upstream connection the proxy gives the bufferevent's
// read event its own callback, which reads into space sized from the connection's recent reads
// (kept as the bufferevent's max single read: 4 KiB, doubled after a read that filled it, up to
// 64 KiB for a stream, halved after one that used under a quarter) and then does what libevent's
// does: the read callback (watermarks respected), or on end of
// file, error or timeout, reading disabled and the event callback with BEV_EVENT_READING and the
// cause. Everything else (enable/disable, timeouts, writes, connect) stays libevent's.
#pragma once

struct bufferevent;

namespace fmp::proxy::server {

/// Installs the reader on a socket bufferevent. Call it after bufferevent_socket_connect(), which
/// assigns libevent's own read callback again. Reading stays enabled or disabled as it was.
void read_without_fionread(bufferevent* bev);

}  // namespace fmp::proxy::server
