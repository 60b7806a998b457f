#!/usr/bin/env python3
"""A UDP flood for scripts/bench-vpp.sh: IPv4 packets of SIZE bytes (28 bytes of headers) to DST port 9 for
SECONDS, one send per packet, as fast as one core allows. usage: udpflood.py DST SIZE SECONDS"""
import socket
import sys
import time

dst, size, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((dst, 9))
payload, send = bytes(size - 28), s.send
end = time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(1000):
        try:
            send(payload)
        except OSError:  # a full queue: the packet is lost, as with any flood
            pass
