"""Prints N free loopback ports, all different, chosen below the kernel's range
for outgoing connections (net.ipv4.ip_local_port_range).

A port from that range (what binding to port 0 gives) can be taken by an
outgoing connection (a client's, or the gateway's to the CMS) before the
server meant to listen on it starts, or while it restarts; the server then
fails with "Address already in use". Ports below the range are never handed
out for outgoing connections, so one that is free now stays free.

Usage: python3 bench/free_ports.py N       (also imported by soak.py)
"""

import random
import socket
import sys


def free_ports(count):
    """`count` different loopback ports nothing listens on, below the outgoing range."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            outgoing_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        outgoing_low = 32768
    low = 10000 if outgoing_low > 12000 else 1024
    candidates = random.sample(range(low, outgoing_low), min(4000, outgoing_low - low))
    ports = []
    for port in candidates:
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            probe.close()
        ports.append(port)
        if len(ports) == count:
            return ports
    sys.exit("free_ports.py: no %d free loopback ports below %d" % (count, outgoing_low))


if __name__ == "__main__":
    print(*free_ports(int(sys.argv[1])))
