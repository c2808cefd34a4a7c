"""SniffingRelay: a TCP relay between the proxy and an upstream that records every byte the proxy
sends upstream, exactly as sent (the EchoUpstream only records what it could parse: a request the
proxy started but never finished, a chunk extension or a trailer would not show there).

    relay = SniffingRelay(up.port)          # proxy's upstream.url = relay.url
    mark = relay.mark()
    ... traffic ...
    sent = relay.sent_since(mark)           # bytes, in arrival order (connections interleaved)
"""

import socket
import threading


class SniffingRelay:
    """Listens on 127.0.0.1 (a free port); every accepted connection is relayed to
    127.0.0.1:target_port in both directions; bytes towards the target are appended to a log."""

    def __init__(self, target_port):
        self.target_port = target_port
        self._lock = threading.Lock()
        self._log = []  # (connection number, bytes) towards the target, in arrival order
        self._socks = []
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name="sniff-accept", daemon=True)
        self._thread.start()

    def mark(self):
        """A position in the log for sent_since()."""
        with self._lock:
            return len(self._log)

    def sent_since(self, mark):
        """Every byte sent towards the target since `mark`, concatenated in arrival order."""
        with self._lock:
            return b"".join(data for _, data in self._log[mark:])

    def streams_since(self, mark):
        """{connection number: bytes} sent towards the target since `mark`, one stream each."""
        out = {}
        with self._lock:
            for n, data in self._log[mark:]:
                out[n] = out.get(n, b"") + data
        return out

    def _accept(self):
        while not self._stop.is_set():
            try:
                down, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                down.close()
                continue
            with self._lock:
                self.connections += 1
                n = self.connections
                self._socks += [down, up]
            threading.Thread(target=self._pump, args=(down, up, n), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, None), daemon=True).start()

    def _pump(self, src, dst, record_as):
        src.settimeout(None)
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record_as is not None:
                    with self._lock:
                        self._log.append((record_as, data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (dst,):
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
