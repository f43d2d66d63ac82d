#!/usr/bin/env python3
"""Compile every ```c block of README.md.

The rule: every block fenced ```c in README.md is a complete C translation unit.  It
includes what it uses (<squall.h>, <stdio.h> …), and its statements are inside functions
(a handler, a coroutine, main), so that it compiles on its own with the project's warnings:

    gcc -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow
        -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-function -Iinclude -c block.c

(-Wno-unused-function: a block may show a handler or a coroutine without the route table
or main that would use it.  Route entries are written out whole, { pattern, class, name,
init_arg }: a shorter positional entry is a -Wmissing-field-initializers error.)

A block with a main() is linked too, against libsquall.a and its dependencies, when the
library has been built (SQ_STATIC_LIB).  Anything that is not a complete C file is fenced
with its own language: ```sh for commands, ```cmake, ```js, ```text for program output.
"""
import os
import re
import shlex
import subprocess
import sys
import tempfile

src = os.environ.get("SQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
readme = os.path.join(src, "README.md")
cc = os.environ.get("CC", "gcc")
cflags = ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-Wshadow",
          "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wno-unused-function", "-I" + os.path.join(src, "include")]
static_lib = os.environ.get("SQ_STATIC_LIB", "")
sanitize = os.environ.get("SQ_SANITIZE", "")

blocks = []  # (line of the fence, language, text)
fence = re.compile(r"^(\s*)```(\S*)\s*$")
with open(readme, encoding="utf-8") as f:
    lines = f.read().split("\n")
i = 0
while i < len(lines):
    m = fence.match(lines[i])
    if m:
        indent, lang, start = m.group(1), m.group(2), i + 1
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            sys.exit(f"FAIL README.md:{start}: unterminated ``` block")
        blocks.append((start, lang, "\n".join(body) + "\n"))
    i += 1

unlabelled = [b for b in blocks if b[1] == ""]
for start, _, _ in unlabelled:
    print(f"FAIL README.md:{start}: a ``` block without a language (```c, ```sh, ```text …)")
cblocks = [b for b in blocks if b[1] == "c"]
print(f"README.md: {len(blocks)} fenced blocks, {len(cblocks)} of them ```c")

link_flags = []
if static_lib and os.path.exists(static_lib):
    deps = subprocess.run(["pkg-config", "--libs", "libssl", "libcrypto", "zlib", "libpcre2-8",
                           "jansson", "libcurl", "libnghttp2", "hiredis"],
                          capture_output=True, text=True, check=True).stdout.split()
    link_flags = [static_lib] + deps + ["-lpthread", "-lm"]
    if sanitize:
        link_flags.append("-fsanitize=" + sanitize)
else:
    print("note: SQ_STATIC_LIB not built, blocks with a main() are compiled but not linked")

failed = len(unlabelled)
with tempfile.TemporaryDirectory() as tmp:
    for n, (start, _, text) in enumerate(cblocks):
        path = os.path.join(tmp, f"readme_{start}.c")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        obj = path[:-2] + ".o"
        flags = cflags + (["-fsanitize=" + sanitize] if sanitize else [])
        r = subprocess.run([cc] + flags + ["-c", path, "-o", obj], capture_output=True, text=True)
        what = "compiled"
        if r.returncode == 0 and link_flags and re.search(r"^int main\s*\(", text, re.M):
            r = subprocess.run([cc, obj, "-o", path[:-2]] + link_flags, capture_output=True,
                               text=True)
            what = "compiled and linked"
        first = next((l for l in text.split("\n") if l.strip() and not l.startswith("#")), "")[:60]
        if r.returncode != 0:
            failed += 1
            print(f"FAIL README.md:{start} ({first}):")
            print("  " + (r.stderr.strip() or r.stdout.strip()).replace(path, f"README.md:{start}+")
                  .replace("\n", "\n  "))
        else:
            print(f"ok   README.md:{start} {what} ({first})")
print("all passed" if not failed else f"{failed} block(s) failed")
sys.exit(1 if failed else 0)
