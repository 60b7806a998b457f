#!/usr/bin/env python3
"""Where a process's CPU went, from `perf script -F ip,sym --no-inline` of a call-graph recording.

Prints two lists, in percent of all samples:
  - inclusive: each function of ours (wireguard_vpp::) or gotatun's on the stack, once per sample;
  - self: each leaf function with the nearest function of ours or gotatun's above it, so that a memmove,
    a malloc or a kernel copy is charged to the stage that caused it ("?" when the unwinder lost it).

Usage: perf script -i FILE -F ip,sym --no-inline | scripts/bench/profile.py [TOP]
"""
import collections
import re
import sys

OURS = re.compile(r"(wireguard_vpp::[\w:]+|gotatun::[\w:]+)")
# Frames that only schedule (a task's closure, a future combinator): charged to what they run.
GLUE = ("Task::spawn", "Map<", "{{closure}}")


def main():
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    inclusive = collections.Counter()
    leaves = collections.Counter()
    samples = 0
    frames = []

    def flush():
        nonlocal samples
        if not frames:
            return
        samples += 1
        anchor = next(
            (f for f in frames if OURS.search(f) and not any(g in f for g in GLUE)), "?"
        )
        leaves[(frames[0][:64], anchor[:96])] += 1
        seen = set()
        for f in frames:
            m = OURS.search(f)
            if m and m.group(1) not in seen:
                seen.add(m.group(1))
                inclusive[m.group(1)] += 1
        frames.clear()

    for line in sys.stdin:
        if not line.strip():
            flush()
        elif line[0] in " \t":
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                frames.append(re.sub(r"\+0x[0-9a-f]+$", "", parts[1].rsplit(" (", 1)[0]))
        else:
            flush()
    flush()
    if not samples:
        print("no samples")
        return
    print(f"{samples} samples; inclusive, by function of ours or gotatun's:")
    for name, n in inclusive.most_common(top):
        print(f"  {100 * n / samples:5.1f}%  {name}")
    print("self, by leaf <- the nearest function of ours or gotatun's:")
    for (leaf, anchor), n in leaves.most_common(top):
        print(f"  {100 * n / samples:5.1f}%  {leaf} <- {anchor}")


if __name__ == "__main__":
    main()
