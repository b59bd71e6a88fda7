#!/usr/bin/env python3
"""Test peers for the kernel interception tests (no third-party modules).

  standin  the stand-in proxy: accepts redirected connections, asks
           SO_ORIGINAL_DST, answers "EXPECT host port" probes with what the
           kernel said, and relays anything else (HTTP) to the original
           destination with the proxy's SO_MARK so it is not redirected again.
  server   a "real" destination: answers probes with "REAL <local addr>" and
           HTTP requests with a small page.
  probe    connect, send "EXPECT host port", print the one-line answer.
  load     many concurrent probes from several processes, each to its own
           destination; fails unless every answer is "ORIG ... OK".
  loop     probe one destination repeatedly for a while; fails on any miss.
"""
import argparse
import ipaddress
import os
import socket
import struct
import sys
import time

SO_ORIGINAL_DST = 80
SLUICE_TCP_ORIGINAL_DST = 0x51CE  # bpf/sluice_maps.h: Sluice's own question
SOL_IPV6 = 41
SO_MARK = 36


def split_hostport(text):
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return host, int(port)


def same_address(a, b):
    """Equal after folding IPv4-mapped IPv6 (::ffff:a.b.c.d) to IPv4."""
    def norm(x):
        ip = ipaddress.ip_address(x)
        return ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped else ip
    return norm(a) == norm(b)


def fmt_host(host):
    return "[%s]" % host if ":" in host else host


def original_dst(sock):
    """(host, port) from getsockopt(SO_ORIGINAL_DST), or raises OSError."""
    peer = ipaddress.ip_address(sock.getpeername()[0])
    v4 = sock.family == socket.AF_INET or (peer.version == 6 and peer.ipv4_mapped is not None)
    if v4:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port = struct.unpack("!H", raw[2:4])[0]
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    raw = sock.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, 28)
    port = struct.unpack("!H", raw[2:4])[0]
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port


def own_original_dst(sock):
    """(host, port) from Sluice's getsockopt(IPPROTO_TCP,
    SLUICE_TCP_ORIGINAL_DST): sockaddr_in or sockaddr_in6 by the
    destination's family; raises OSError when unanswered."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, SLUICE_TCP_ORIGINAL_DST, 28)
    family = struct.unpack("=H", raw[:2])[0]
    port = struct.unpack("!H", raw[2:4])[0]
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port


async def listen(addr, handler):
    host, port = split_hostport(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    sock.listen(4096)
    return await asyncio.start_server(handler, sock=sock, limit=1 << 16)


# ---------------------------------------------------------------- standin
class Standin:
    def __init__(self, log, mark):
        self.log = log
        self.mark = mark
        self.stats = {"ok": 0, "mismatch": 0, "miss": 0, "relay": 0}

    def note(self, line):
        self.log.write(line + "\n")
        self.log.flush()

    async def handle(self, reader, writer):
        sock = writer.get_extra_info("socket")
        peer = writer.get_extra_info("peername")
        try:
            orig = original_dst(sock)
            err = None
        except OSError as e:
            orig, err = None, e.errno
        # Sluice's own question must agree (the proxy asks it first).
        try:
            own = own_original_dst(sock)
        except OSError:
            own = None
        own_ok = (own is None) if orig is None else (
            own is not None and same_address(own[0], orig[0]) and own[1] == orig[1])
        try:
            first = await asyncio.wait_for(reader.readline(), 10)
        except (asyncio.TimeoutError, ConnectionError):
            first = b""
        if orig is None:
            # A real proxy refuses: no original destination, no relay.
            self.stats["miss" if own_ok else "mismatch"] += 1
            self.note("MISS peer=%s:%d errno=%s%s" % (fmt_host(peer[0]), peer[1], err,
                                                     "" if own_ok else " but Sluice's own answered %s:%d" % own))
            if first.startswith(b"EXPECT "):
                writer.write(b"MISS %d\n" % (err or 0))
            await self.close(writer)
            return
        host, port = orig
        if first.startswith(b"EXPECT "):
            _, ehost, eport = first.decode().split()
            same = same_address(ehost, host) and int(eport) == port and own_ok
            verdict = "OK" if same else "MISMATCH"
            if not own_ok:
                self.note("OWN-MISMATCH Sluice's own answered %s" % (own,))
            self.stats["ok" if same else "mismatch"] += 1
            self.note("ORIG peer=%s:%d orig=%s:%d expected=%s:%s %s" %
                      (fmt_host(peer[0]), peer[1], fmt_host(host), port, fmt_host(ehost), eport, verdict))
            writer.write(("ORIG %s %d %s\n" % (host, port, verdict)).encode())
            await self.close(writer)
            return
        self.stats["relay"] += 1
        self.note("RELAY peer=%s:%d orig=%s:%d" % (fmt_host(peer[0]), peer[1], fmt_host(host), port))
        await self.relay(first, reader, writer, host, port)

    async def relay(self, first, reader, writer, host, port):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        up = socket.socket(family, socket.SOCK_STREAM)
        up.setsockopt(socket.SOL_SOCKET, SO_MARK, self.mark)  # not redirected again
        up.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(up, (host, port))
            ureader, uwriter = await asyncio.open_connection(sock=up)
        except OSError as e:
            self.note("RELAY-FAILED %s:%d %s" % (fmt_host(host), port, e))
            up.close()
            await self.close(writer)
            return
        uwriter.write(first)

        async def pipe(r, w):
            try:
                while True:
                    data = await r.read(65536)
                    if not data:
                        break
                    w.write(data)
                    await w.drain()
            except ConnectionError:
                pass
            finally:
                try:
                    w.write_eof()
                except (OSError, RuntimeError):
                    pass

        await asyncio.gather(pipe(reader, uwriter), pipe(ureader, writer))
        await self.close(uwriter)
        await self.close(writer)

    @staticmethod
    async def close(writer):
        try:
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def run_listeners(addrs, handler, ready):
    servers = [await listen(a, handler) for a in addrs]
    if ready:
        with open(ready, "w") as f:
            f.write("ready\n")
    await asyncio.gather(*(s.serve_forever() for s in servers))


def cmd_standin(args):
    with open(args.log, "a") as log:
        s = Standin(log, int(args.mark, 0))
        asyncio.run(run_listeners(args.listen, s.handle, args.ready))


# ---------------------------------------------------------------- server
async def serve_real(reader, writer):
    sock = writer.get_extra_info("socket")
    host, port = sock.getsockname()[:2]
    try:
        first = await asyncio.wait_for(reader.readline(), 10)
    except (asyncio.TimeoutError, ConnectionError):
        first = b""
    if first.startswith(b"EXPECT "):
        writer.write(("REAL %s %d\n" % (host, port)).encode())
    elif first.startswith(b"GET "):
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        body = ("real-server %s:%d\n" % (fmt_host(host), port)).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    await Standin.close(writer)


def cmd_server(args):
    asyncio.run(run_listeners(args.listen, serve_real, args.ready))


# ---------------------------------------------------------------- clients
def probe_once(host, port, mark=None, timeout=5.0):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        if mark is not None:
            s.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        s.settimeout(timeout)
        s.connect((host, port))
        s.sendall(("EXPECT %s %d\n" % (host, port)).encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        return data.decode().strip()


def cmd_probe(args):
    try:
        print(probe_once(args.host, args.port, None if args.mark is None else int(args.mark, 0)))
    except OSError as e:
        print("ERROR %s" % e)
        return 1
    return 0


async def load_worker_async(targets):
    async def one(host, port):
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 20)
            w.write(("EXPECT %s %d\n" % (host, port)).encode())
            line = (await asyncio.wait_for(r.readline(), 20)).decode().strip()
            w.close()
            return line
        except (OSError, asyncio.TimeoutError) as e:
            return "ERROR %s" % e
    # All connections of this process are open at the same time.
    return await asyncio.gather(*(one(h, p) for h, p in targets))


def load_worker(targets):
    return asyncio.run(load_worker_async(targets))


def cmd_load(args):
    hosts = args.hosts
    targets = []
    for i in range(args.count):
        host = hosts[i % len(hosts)]
        targets.append((host, args.base_port + i))
    chunks = [targets[i::args.procs] for i in range(args.procs)]
    with multiprocessing.Pool(args.procs) as pool:
        results = pool.map(load_worker, chunks)
    ok = bad = 0
    for chunk, lines in zip(chunks, results):
        for (host, port), line in zip(chunk, lines):
            parts = line.split()
            good = (len(parts) == 4 and parts[0] == "ORIG" and parts[3] == "OK" and
                    same_address(parts[1], host) and int(parts[2]) == port)
            if good:
                ok += 1
            else:
                bad += 1
                if bad <= 10:
                    print("BAD %s:%d -> %s" % (host, port, line))
    print("load: %d connections from %d processes: ok=%d bad=%d" % (args.count, args.procs, ok, bad))
    return 0 if bad == 0 and ok == args.count else 1


def cmd_loop(args):
    ok = bad = 0
    deadline = time.time() + args.duration
    stop_file = args.stop_file
    while time.time() < deadline and not (stop_file and os.path.exists(stop_file)):
        try:
            line = probe_once(args.host, args.port, timeout=3)
        except OSError as e:
            line = "ERROR %s" % e
        if line.startswith("ORIG ") and line.endswith(" OK"):
            ok += 1
        else:
            bad += 1
            print("BAD %s" % line, flush=True)
        time.sleep(args.interval / 1000.0)
    print("loop: ok=%d bad=%d" % (ok, bad), flush=True)
    return 0 if bad == 0 and ok > 0 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("standin")
    s.add_argument("--listen", action="append", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--mark", default="0x539")
    s.add_argument("--ready")
    s = sub.add_parser("server")
    s.add_argument("--listen", action="append", required=True)
    s.add_argument("--ready")
    s = sub.add_parser("probe")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("--mark")
    s = sub.add_parser("load")
    s.add_argument("--hosts", nargs="+", required=True)
    s.add_argument("--base-port", type=int, default=20000)
    s.add_argument("--count", type=int, default=1000)
    s.add_argument("--procs", type=int, default=4)
    s = sub.add_parser("loop")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("--duration", type=float, default=10)
    s.add_argument("--interval", type=float, default=20)
    s.add_argument("--stop-file")
    args = p.parse_args()
    # Heavy modules only where needed: probes start many times per test.
    if args.cmd in ("standin", "server", "load"):
        globals()["asyncio"] = __import__("asyncio")
        globals()["multiprocessing"] = __import__("multiprocessing")
    return {"standin": cmd_standin, "server": cmd_server, "probe": cmd_probe,
            "load": cmd_load, "loop": cmd_loop}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
