#!/usr/bin/env python3
"""VPP's CPU cost of the packets of one measurement, from `show runtime` and `show trace` (scripts/bench-vpp.sh).

usage: vppcost.py RUNTIME TRACE HZ EXCLUDE FIRST:MUST [FIRST:MUST ...]

A path is the list of nodes of one traced packet whose first node is FIRST and that went through MUST (the
first such packet of the trace). EXCLUDE is a regular expression of node names left out (the generator and
the af_packet I/O, which a DPDK NIC would replace). Prints two numbers:
  seconds  the clocks of every node on any of the paths (each node once, all its packets) / HZ: the CPU time
           VPP spent on this measurement's packets in the window of `show runtime`;
  clocks   clocks per packet along the first path (a node visited twice counts twice): VPP's cost of one
           packet of the first path, so HZ / clocks is its packets per CPU-second.
The paths go to stderr for the log.
"""
import re
import sys


def runtime(path):
    """node -> (vectors, clocks per vector) from `show runtime` (the last five columns are numbers)."""
    nodes = {}
    for line in open(path):
        f = line.split()
        if len(f) < 7 or f[0] == "Name":
            continue
        try:
            vectors, clocks = float(f[-4]), float(f[-2])
        except ValueError:
            continue
        old = nodes.get(f[0], (0.0, 0.0))
        total = old[0] * old[1] + vectors * clocks  # several threads: weighted by vectors
        v = old[0] + vectors
        nodes[f[0]] = (v, total / v if v else 0.0)
    return nodes


def traces(path):
    """The node lists of the traced packets (lines `hh:mm:ss:usec: node-name`)."""
    packets, cur = [], None
    for line in open(path):
        if line.startswith("Packet "):
            cur = []
            packets.append(cur)
            continue
        m = re.match(r"^\d\d:\d\d:\d\d:\d+: (\S+)\s*$", line)
        if m and cur is not None:
            cur.append(m.group(1))
    return packets


def main():
    rt_file, tr_file, hz, exclude = sys.argv[1], sys.argv[2], float(sys.argv[3]), re.compile(sys.argv[4])
    nodes, packets = runtime(rt_file), traces(tr_file)
    paths = []
    for spec in sys.argv[5:]:
        first, must = spec.split(":")
        path = next((p for p in packets if p and p[0] == first and must in p), None)
        if path is None:
            sys.exit(f"vppcost: no traced packet from {first} through {must}")
        # An interface's output node hands its packets to the tx node, which the trace does not show.
        tx = [n[: -len("output")] + "tx" for n in path if n.endswith("-output")]
        path = path + [n for n in tx if n in nodes and n not in path]
        print(f"vppcost: path {spec}: {' '.join(path)}", file=sys.stderr)
        paths.append([n for n in path if not exclude.match(n)])
    union = {n for p in paths for n in p}
    seconds = sum(nodes.get(n, (0, 0))[0] * nodes.get(n, (0, 0))[1] for n in union) / hz
    clocks = sum(nodes.get(n, (0, 0))[1] for n in paths[0])
    print(f"{seconds:.4f} {clocks:.1f}")


if __name__ == "__main__":
    main()
