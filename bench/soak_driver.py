"""The soak's load driver: one event loop per process over raw keep-alive HTTP/1.1 connections bound
to the traffic classes' source addresses, one request in flight per connection all the time (closed
loop), failed logins paced; every answer checked, latencies in a histogram. bench/soak.py describes
the soak."""

from __future__ import annotations

import datetime
import math
import multiprocessing as mp
import selectors
import signal
import socket
import time

from soak_common import MAX_EXAMPLES, REQUEST_TIMEOUT
from soak_traffic import TrafficClass, check_answer

N_BUCKETS = 96  # latency histogram: bucket i holds [2^(i/4), 2^((i+1)/4)) microseconds


def bucket(us: float) -> int:
    """The histogram bucket of a latency in microseconds."""
    return min(N_BUCKETS - 1, max(0, int(4 * math.log2(max(us, 1.0)))))


def bucket_upper_ms(i: int) -> float:
    """Bucket i's upper bound in milliseconds."""
    return 2 ** ((i + 1) / 4) / 1000.0


class Lane:
    """One connection of one class, one request in flight at a time."""

    def __init__(self, tc: TrafficClass, sources: list, interval: float, offset: float):
        self.tc = tc
        self.sources = sources
        self.src_i = 0
        self.req_i = 0
        self.interval = interval  # paced lanes: seconds between requests; 0 = closed loop
        self.next_send = time.monotonic() + offset
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.sent_at = 0.0
        self.in_flight = False
        self.connects = 0

    @property
    def source(self) -> str:
        return self.sources[self.src_i]

    def connect(self, port: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(REQUEST_TIMEOUT)
        s.bind((self.source, 0))
        s.connect(("127.0.0.1", port))
        self.sock = s
        self.buf = bytearray()
        self.connects += 1

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = bytearray()
        self.in_flight = False


def parse_response(buf: bytearray):
    """(status, headers, consumed) for one complete response at the start of buf, or None if more
    bytes are needed. Header names lower-cased; a repeated header keeps its values joined by ', '."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(head[0][9:12])
    headers: dict = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        v = v.strip()
        headers[k] = f"{headers[k]}, {v}" if k in headers else v
    pos = end + 4
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(buf) < pos + n:
            return None
        return status, headers, pos + n
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                end_t = buf.find(b"\r\n\r\n", pos - 2)
                if end_t < 0:
                    return None
                return status, headers, end_t + 4
            if len(buf) < pos + size + 2:
                return None
            pos += size + 2
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, pos
    raise ValueError(f"response without a length: {head[0]!r}")


def new_class_stats() -> dict:
    """One class's tallies, empty."""
    return {"statuses": {}, "unexpected": 0, "errors": 0, "examples": [], "latency": [0] * N_BUCKETS,
            "connects": 0}


def worker_main(wid: int, port: int, classes: list[TrafficClass], n_conn: int, n_workers: int,
                login_rate: float, stop_at, out: mp.Queue) -> None:
    """One driver process. stop_at: a shared double, the monotonic time to stop sending (the parent
    moves it earlier if Envoy dies); then in-flight requests are waited for and the stats sent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    lanes: list[Lane] = []
    for tc in classes:
        if tc.paced:
            mine = tc.sources[wid::n_workers]
            if not mine or login_rate <= 0:
                continue
            # one lane per worker rotating over its addresses, at its share of the rate
            share = login_rate * len(mine) / len(tc.sources)
            lanes.append(Lane(tc, mine, 1.0 / share, offset=wid / login_rate))
        else:
            for _ in range(n_conn):
                lanes.append(Lane(tc, tc.sources, 0.0, 0.0))
    stats = {tc.name: new_class_stats() for tc in classes}
    sel = selectors.DefaultSelector()

    def record_problem(lane: Lane, kind: str, detail: str, status=None, headers=None) -> None:
        st = stats[lane.tc.name]
        if kind == "error":
            st["errors"] += 1
        else:
            st["unexpected"] += 1
        if len(st["examples"]) < MAX_EXAMPLES:
            st["examples"].append({"time": datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3],
                                   "worker": wid, "source": lane.source, "kind": kind, "detail": detail,
                                   "status": status, "headers": headers,
                                   "request": lane.tc.requests[lane.req_i].decode("latin-1")[:300]})

    def drop(lane: Lane) -> None:
        if lane.sock is not None:
            try:
                sel.unregister(lane.sock)
            except (KeyError, ValueError):
                pass
        lane.close()

    def send(lane: Lane) -> None:
        if lane.sock is None:
            try:
                lane.connect(port)
            except OSError as e:
                record_problem(lane, "error", f"connect from {lane.source}: {e!r}")
                lane.close()
                lane.next_send = time.monotonic() + 0.1
                return
            sel.register(lane.sock, selectors.EVENT_READ, lane)
        try:
            lane.sock.sendall(lane.tc.requests[lane.req_i])
        except OSError as e:
            record_problem(lane, "error", f"send: {e!r}")
            drop(lane)
            lane.next_send = time.monotonic() + 0.1
            return
        lane.sent_at = time.monotonic()
        lane.in_flight = True

    def advance(lane: Lane) -> None:
        lane.req_i = (lane.req_i + 1) % len(lane.tc.requests)
        if lane.interval:
            lane.next_send = max(lane.next_send + lane.interval, time.monotonic() - 1.0)
            if len(lane.sources) > 1:  # rotate: the next request comes from the next address
                drop(lane)
                lane.src_i = (lane.src_i + 1) % len(lane.sources)
        else:
            lane.next_send = 0.0

    def on_readable(lane: Lane) -> None:
        try:
            data = lane.sock.recv(65536)
        except OSError as e:
            data = None
            err = repr(e)
        else:
            err = "connection closed by Envoy"
        if not data:
            if lane.in_flight:
                record_problem(lane, "error", f"{err} with a request in flight ({len(lane.buf)} bytes read)")
                advance(lane)
            drop(lane)
            return
        lane.buf += data
        while lane.in_flight:
            try:
                parsed = parse_response(lane.buf)
            except (ValueError, IndexError) as e:
                record_problem(lane, "error", f"unreadable response: {e!r}: {bytes(lane.buf[:300])!r}")
                drop(lane)
                advance(lane)
                return
            if parsed is None:
                return
            status, headers, used = parsed
            del lane.buf[:used]
            if 100 <= status < 200:
                continue
            now = time.monotonic()
            st = stats[lane.tc.name]
            st["statuses"][status] = st["statuses"].get(status, 0) + 1
            st["latency"][bucket((now - lane.sent_at) * 1e6)] += 1
            problem = check_answer(lane.tc, status, headers)
            if problem:
                record_problem(lane, "unexpected", problem, status, headers)
            lane.in_flight = False
            closing = headers.get("connection", "").lower() == "close"
            if closing:
                drop(lane)
            advance(lane)

    last_report = 0.0
    draining = False
    try:
        while True:
            now = time.monotonic()
            if not draining and now >= stop_at.value:
                draining = True
                drain_deadline = now + REQUEST_TIMEOUT
            if draining and (not any(x.in_flight for x in lanes) or now >= drain_deadline):
                break
            if not draining:
                for lane in lanes:
                    if not lane.in_flight and lane.next_send <= now:
                        send(lane)
            for lane in lanes:
                if lane.in_flight and now - lane.sent_at > REQUEST_TIMEOUT:
                    record_problem(lane, "error", f"no answer within {REQUEST_TIMEOUT:.0f} s")
                    drop(lane)
                    advance(lane)
            pending = [x.next_send for x in lanes if not x.in_flight and x.next_send > now]
            timeout = min([0.2] + [max(0.0, p - now) for p in pending])
            for key, _ in sel.select(timeout):
                on_readable(key.data)
            if now - last_report >= 1.0:
                last_report = now
                out.put(("progress", wid, {n: sum(s["statuses"].values()) for n, s in stats.items()}))
    finally:
        for lane in lanes:
            stats[lane.tc.name]["connects"] += lane.connects
            drop(lane)
        out.put(("final", wid, stats))
