#!/usr/bin/python3
"""Pages touched per request, between system calls, from a valgrind lackey trace.

    page_touch.py NAME LOG OFFSET MAPS REQUESTS

LOG is `valgrind --tool=lackey --trace-mem=yes --trace-syscalls=yes --log-file=LOG` of a
server; OFFSET the log's size when the measured requests began; MAPS the server's
/proc/PID/maps meanwhile; REQUESTS how many were measured.  The trace is cut at every system
call but the clock reads (clock_gettime, gettimeofday, time: the vDSO answers those without
entering the kernel outside valgrind).  Within each piece every distinct 4 KiB page counts
once: on a kernel with page-table isolation and no PCID each system call empties the TLB, so
these are the page walks a request costs.  Prints one markdown row: NAME, instructions, code
pages (the program's own, libc, others), data pages, and the pieces per request.
"""
import collections
import sys

CLOCKS = (b"clock_gettime", b"gettimeofday", b"sys_time")


def load_maps(path):
    maps = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            maps.append((lo, hi, parts[5] if len(parts) > 5 else ""))
    return maps


def owner(maps, page):
    addr = page << 12
    for lo, hi, name in maps:
        if lo <= addr < hi:
            return name
    return ""


def main():
    name, log, offset, maps_path, nreq = sys.argv[1:6]
    nreq = int(nreq)
    maps = load_maps(maps_path)
    pieces = 0
    instr = 0
    code = collections.Counter()  # page -> pieces that ran code on it
    data = collections.Counter()
    cur_code, cur_data = set(), set()

    def cut():
        nonlocal pieces
        pieces += 1
        code.update(cur_code)
        data.update(cur_data)
        cur_code.clear()
        cur_data.clear()

    with open(log, "rb") as f:
        f.seek(int(offset))
        for line in f:
            if line.startswith(b"SYSCALL"):
                # "... [async] --> ..." lines finish a call already counted
                if b"[async] -->" in line and b"sys_" not in line:
                    continue
                if any(c in line for c in CLOCKS):
                    continue
                cut()
                continue
            kind = line[:2]
            if kind not in (b"I ", b" L", b" S", b" M"):
                continue
            try:
                addr = int(line[3:].split(b",", 1)[0], 16)
            except ValueError:
                continue
            if kind == b"I ":
                instr += 1
                cur_code.add(addr >> 12)
            else:
                cur_data.add(addr >> 12)
    prog = ""
    for lo, hi, mapped in maps:
        if mapped:
            prog = mapped
            break
    own = libc = other = 0
    for page, n in code.items():
        o = owner(maps, page)
        if o == prog:
            own += n
        elif "/libc.so" in o:
            libc += n
        else:
            other += n
    d = sum(data.values())
    print(f"| {name} | {instr / nreq:.0f} | {own / nreq:.1f} | {libc / nreq:.1f} | "
          f"{other / nreq:.1f} | {d / nreq:.1f} | {(own + libc + other + d) / nreq:.1f} | "
          f"{pieces / nreq:.2f} |")


if __name__ == "__main__":
    main()
