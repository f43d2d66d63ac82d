#!/usr/bin/env python3
"""Every public declaration in include/ carries a Doxygen doc comment.

Checked here without doxygen, by reading the headers: each function, typedef, struct, union,
enum, extern variable and macro (#define, include guards aside) declared at file scope in
include/squall.h and include/squall/*.h must have a /** … */ (or ///) comment ending on the
line just above it, or a trailing /**< … */ on its own line(s).  Members and enumerators are
left to doxygen.  Then, where doxygen is installed, docs/Doxyfile is run (output in the
build directory) and must print no warning at all (WARN_IF_UNDOCUMENTED is on).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

src = os.environ.get("SQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
inc = os.path.join(src, "include")
headers = [os.path.join(inc, "squall.h")] + sorted(
    os.path.join(inc, "squall", f) for f in os.listdir(os.path.join(inc, "squall")) if f.endswith(".h"))


def strip_code(line, in_comment):
    """The line without comments and string literals; whether a comment is still open."""
    out, i = [], 0
    while i < len(line):
        if in_comment:
            j = line.find("*/", i)
            if j < 0:
                return "".join(out), True
            in_comment, i = False, j + 2
        elif line.startswith("/*", i):
            in_comment, i = True, i + 2
        elif line.startswith("//", i):
            break
        elif line[i] == '"':
            j = i + 1
            while j < len(line) and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            out.append('""')
            i = j + 1
        else:
            out.append(line[i])
            i += 1
    return "".join(out), in_comment


def doc_above(lines, i):
    """Whether a doc comment ends on the line above line i (skipping nothing)."""
    j = i - 1
    if j < 0:
        return False
    if lines[j].strip().startswith("///"):
        return True
    if not lines[j].rstrip().endswith("*/"):
        return False
    while j >= 0 and "/*" not in lines[j].replace("*/", "  "):
        j -= 1
    return j >= 0 and re.search(r"/\*\*(?!<)|/\*!", lines[j]) is not None


def name_of(stmt):
    stmt = re.sub(r"__attribute__\s*\(\(.*?\)\)", "", stmt)
    m = re.match(r"\s*typedef\s+(?:struct|union|enum)\s+(\w+)?\s*\{", stmt)
    if m:
        t = re.search(r"\}\s*(\w+)\s*;\s*$", stmt)
        return "typedef", t.group(1) if t else m.group(1)
    m = re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", stmt)
    if stmt.lstrip().startswith("typedef"):
        if m:
            return "typedef", m.group(1)
        return "typedef", re.findall(r"(\w+)\s*;\s*$", stmt)[0]
    m = re.match(r"\s*(struct|union|enum)\s+(\w+)?\s*\{", stmt)
    if m:
        return m.group(1), m.group(2) or "(anonymous)"
    m = re.search(r"(\w+)\s*\(", stmt)
    if m and not stmt.lstrip().startswith("extern "):
        return "function", m.group(1)
    return "variable", re.findall(r"(\w+)\s*(?:\[[^\]]*\])?\s*;\s*$", stmt)[0]


missing, count = [], 0
for path in headers:
    rel = os.path.relpath(path, inc)
    lines = open(path, encoding="utf-8").read().split("\n")
    in_comment, depth, stmt, start = False, 0, "", None
    guard = None
    i = 0
    while i < len(lines):
        line = lines[i]
        code, in_comment_after = strip_code(line, in_comment)
        in_comment = in_comment_after
        s = code.strip()
        if start is None and s.startswith("#"):
            m = re.match(r"#\s*ifndef\s+(\w+)", s)
            if m and guard is None:
                guard = m.group(1)
            m = re.match(r"#\s*define\s+(\w+)", s)
            if m and m.group(1) != guard:
                count += 1
                if not (doc_above(lines, i) or "/**<" in line):
                    missing.append(f"{rel}:{i + 1}: macro {m.group(1)}")
            while lines[i].rstrip().endswith("\\"):
                i += 1
            i += 1
            continue
        if start is None and (not s or s.startswith('extern ""') or s == "}"):
            i += 1
            continue
        if start is None:
            start, stmt = i, ""
        stmt += code + "\n"
        depth += code.count("{") - code.count("}")
        if depth == 0 and s.endswith(";"):
            last = i
            kind, name = name_of(stmt)
            count += 1
            trailing = any("/**<" in lines[k] for k in range(start, last + 1)) and kind != "typedef" \
                or (kind == "typedef" and "/**<" in lines[last])
            if not (doc_above(lines, start) or trailing):
                missing.append(f"{rel}:{start + 1}: {kind} {name}")
            start = None
        i += 1

for m in missing:
    print("FAIL no doc comment:", m)
print(f"{'ok  ' if not missing else 'FAIL'} {count} public declarations in {len(headers)} headers, "
      f"{count - len(missing)} with a doc comment")
failed = bool(missing)

doxygen = shutil.which("doxygen")
if not doxygen:
    print("note: doxygen not installed, the doxygen run is skipped")
else:
    out = os.environ.get("SQ_DOCS_DIR") or tempfile.mkdtemp(prefix="squall-docs-")
    scratch = not os.environ.get("SQ_DOCS_DIR")
    os.makedirs(out, exist_ok=True)
    cfg = open(os.path.join(src, "docs", "Doxyfile"), encoding="utf-8").read()
    cfg += f'\nOUTPUT_DIRECTORY = "{out}"\nINPUT = "{inc}"\nSTRIP_FROM_PATH = "{inc}"\n' \
           f'STRIP_FROM_INC_PATH = "{inc}"\n'
    r = subprocess.run([doxygen, "-"], input=cfg, capture_output=True, text=True, cwd=src)
    warnings = [l for l in (r.stderr + r.stdout).split("\n") if "warning" in l or "error" in l]
    for w in warnings:
        print("FAIL doxygen:", w)
    if r.returncode != 0 or warnings:
        failed = True
    else:
        print(f"ok   doxygen {subprocess.run([doxygen, '--version'], capture_output=True, text=True).stdout.strip()}:"
              f" no warnings, {len(os.listdir(os.path.join(out, 'html')))} files in {out}/html")
    if scratch:
        shutil.rmtree(out, ignore_errors=True)
print("all passed" if not failed else "failed")
sys.exit(1 if failed else 0)
