"""The same templates rendered by squall (tests/web/test_template's render mode) and by
Jinja2 (Debian's python3-jinja2, autoescape on, default whitespace settings): the bytes must
be equal.  The templates (tests/web/templates/) keep to the syntax both share: extends and
blocks with super(), include (recursive too), for with loop.*, if/elif/else, set, filters, raw, comments,
whitespace control."""
import json
import os
import subprocess
import sys

import jinja2

BUILD = os.environ["SQ_BUILD_DIR"]
HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "templates")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def rows(n):
    return [{"id": i, "name": f"item <{i}> & \"co\" 'x'", "price": i * 3 + 0.5,
             "tags": ["red", "green & blue", f"t{i % 7}"]} for i in range(1, n + 1)]


CONTEXTS = {
    "table.html": [
        {"title": "Prices & <stock>", "rows": rows(1000), "site": {"name": "squall", "year": 2026}},
        {"title": "Empty", "rows": [], "site": {"name": "s", "year": 1}},
    ],
    "tree.html": [
        {"nodes": [{"name": "root & <co>", "children": [
            {"name": "a", "children": [{"name": "a1"}, {"name": "a2", "children": []}]},
            {"name": "b", "children": [{"name": "b1", "children": [{"name": "deep 'x'"}]}]}]}]},
        {"nodes": []},
    ],
    "logic.html": [
        {"items": ["a", "b", "c"], "prices": {"apple": 1, "pear": 2.5},
         "user": {"name": "Ann", "bio": "<script>alert('x')</script>"},
         "url": "a b&c/d?e=f"},
        {"items": [], "prices": {}, "user": {}, "url": ""},
        {"items": ["only"], "prices": {"x": 0}, "user": {"name": "Z"}, "url": "/"},
    ],
}

env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
exe = os.path.join(BUILD, "tests", "test_template")
for name, contexts in CONTEXTS.items():
    for i, ctx in enumerate(contexts):
        want = env.get_template(name).render(**ctx).encode()
        path = os.path.join(BUILD, f"tpl-ctx-{os.getpid()}.json")
        with open(path, "w") as f:
            json.dump(ctx, f)
        r = subprocess.run([exe, "render", TEMPLATES, name, path], capture_output=True, timeout=60)
        os.unlink(path)
        got = r.stdout
        same = r.returncode == 0 and got == want
        detail = f"{len(want)} bytes"
        if not same:
            k = next((j for j in range(min(len(got), len(want))) if got[j] != want[j]),
                     min(len(got), len(want)))
            detail = (f"squall {len(got)} vs Jinja2 {len(want)} bytes, first difference at {k}: "
                      f"squall {got[max(0, k - 40):k + 40]!r} / Jinja2 {want[max(0, k - 40):k + 40]!r} "
                      f"{r.stderr.decode(errors='replace')}")
        check(same, f"{name} with context {i}: the same bytes as Jinja2 {jinja2.__version__} ({detail})")
print(f"{len(failures)} failed" if failures else "all passed")
sys.exit(1 if failures else 0)
