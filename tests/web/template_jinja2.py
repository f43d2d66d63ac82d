"""The same templates rendered by squall (tests/web/test_template's render mode) and by
Jinja2 (Debian's python3-jinja2, autoescape on, default whitespace settings): the bytes must
be equal.  The templates (tests/web/templates/) keep to the syntax both share: extends and
blocks with super(), include (recursive too), for with loop.*, if/elif/else, set, filters, raw, comments,
whitespace control.  Then Jinja2's filters on numbers, text and lists (FILTER_CASES), with
autoescape on and off, and the filter calls both refuse (FILTER_ERRORS)."""
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

# Jinja2's filters on numbers, text and lists: each case a line of one template (one render,
# a line-by-line comparison), with and without autoescape; then the cases both must refuse.
FILTER_CTX = {"h": "<b>x</b> & 'y'", "u": "\u00e9COLE \u00dftra\u00dfe \u65e5\u672c", "l": [3, 1, 2],
              "sl": ["b", "A", "a", "B", "\u00e9", "Z"], "d": {"b": 1, "a": 2}, "f": [1.5, -2, 0.25],
              "objs": [{"n": "b", "p": 2.5, "o": {"k": 2}}, {"n": "A", "p": 1, "o": {"k": 1}},
                       {"n": "a", "p": 3, "o": {"k": 3}}],
              "words": "hello   world, it's  me_2 caf\u00e9 \u65e5\u672c\u8a9e \u2014 r\u00e9sum\u00e9\u00a0x\u3000y",
              "long": "Lorem ipsum dolor sit amet, consectetur adipiscing elit \u00e9\u00e8 sed do",
              "nested": [[1, 2], [3]], "e": "", "z": 0, "one": [{"a": 1}], "neg": -7, "big": 9223372036854775807}
FILTER_CASES = [
    # float
    '{{ "1.5"|float }} {{ "x"|float }} {{ "x"|float(1) }} {{ "x"|float("d") }} {{ true|float }}',
    '{{ none|float }} {{ l|float }} {{ " 1_0.5 "|float }} {{ 3|float }} {{ "0x10"|float }}',
    '{{ " -1.5e3"|float }} {{ "1e5"|float }} {{ e|float }} {{ neg|float }} {{ "12"|float + 1 }}',
    '{{ "1__0"|float }} {{ "."|float }} {{ "1."|float }} {{ ".5"|float }} {{ big|float }} {{ d|float(nope) }}|',
    # abs
    '{{ -3|abs }} {{ -3.5|abs }} {{ true|abs }} {{ -0.0|abs }} {{ neg|abs }} {{ z|abs }} {{ (-big)|abs }}',
    # round
    '{{ 2.5|round }} {{ 3.5|round }} {{ 42|round }} {{ 2.675|round(2) }} {{ -0.4|round }} {{ true|round }}',
    '{{ 25|round(-1) }} {{ 35|round(-1) }} {{ -25|round(-1) }} {{ 1250.0|round(-2) }} {{ 1250.5|round(-2) }}',
    '{{ 49|round(-2) }} {{ 50|round(-2) }} {{ 51|round(-2) }} {{ 150|round(-2) }} {{ 49.0|round(-2) }}',
    '{{ 50.0|round(-2) }} {{ 50.1|round(-2) }} {{ 150.0|round(-2) }} {{ -50.1|round(-2) }} {{ 123.456|round(-400) }}',
    '{{ 0.5|round }} {{ 1.5|round }} {{ -2.5|round }} {{ 1e300|round(2) }} {{ 0.1|round(400) }}',
    '{{ 5e-324|round(323) }} {{ 1.15|round(1) }} {{ 1.25|round(1) }} {{ 2.5|round(true) }} {{ big|round(-30) }}',
    "{{ 5|round(2, 'ceil') }} {{ 1.234|round(1, 'floor') }} {{ -1.234|round(1, 'ceil') }} {{ 1234|round(-2, 'floor') }}",
    "{{ 2.5|round(0, 'ceil') }} {{ 2.5|round(0, 'floor') }} {{ -2.5|round(0, 'floor') }} {{ 0.285|round(2, 'ceil') }}",
    "{{ 1234.5|round(-2, 'ceil') }} {{ 7|round(-1, 'ceil') }} {{ f|sum|round(1, 'common') }} {{ 1e22|round(-21) }}",
    '{{ 9.5e-5|round(4) }} {{ 123456789.987654321|round(5) }} {{ 1.7976931348623e307|round(-307) }}',
    # replace
    '{{ "abc"|replace("", "-") }} {{ "abc"|replace("", "-", 2) }} {{ "aaa"|replace("a", "b", 0) }}',
    '{{ "aaa"|replace("a", "b", -1) }} {{ "aaa"|replace("a", "b", none) }} {{ "aaa"|replace("a", "b", true) }}',
    '{{ 123|replace(2, 5) }} {{ nope|replace("a", "b") }}|{{ "a"|replace(nope, "x") }} {{ ""|replace("", "") }}',
    '{{ h|replace("<", "[") }} {{ h|safe|replace("<", "&") }} {{ h|replace("<"|safe, "&") }} {{ h|replace("<", "&"|safe) }}',
    '{{ u|replace("\u00df", "ss") }} {{ u|replace("", "|", 3) }} {{ "a.b.c"|replace(".", "", 1) }} {{ "x"|replace("x", "\u00e9\u00e9") }}',
    '{% set r = h|safe|replace("x", "<i>") %}{{ r }} {{ r|replace("i", "u"|safe) }}',
    # capitalize, title, upper, lower (ASCII's cases: the cases below keep to them)
    '{{ "hello wORLD"|capitalize }} {{ "hello wORLD-foo(bar) [x]<y>{z} a_b o\'neil\\ttab"|title }}',
    '{{ ""|title }} {{ nope|title }}|{{ 12|title }} {{ none|title }} {{ "<b>"|safe|title }} {{ "<b>"|safe|capitalize }}',
    '{{ "\u65e5\u672c abc-def \u00a0ghi\u3000jkl"|title }} {{ "\u65e5\u672c abc"|upper }} {{ "aBC"|capitalize }} {{ e|capitalize }}',
    # truncate
    '{{ "foo bar baz qux"|truncate(9) }} | {{ "foo bar baz qux"|truncate(9, true) }} | {{ "foo bar baz qux"|truncate(11, false, "..", 0) }}',
    '{{ "foobarbazqux"|truncate(9, false, "...", 0) }} {{ long|truncate }} {{ long|truncate(20) }} {{ long|truncate(20, true) }}',
    '{{ "h\u00e9llo w\u00f6rld \u00f1and\u00fa"|truncate(10, false, "\u2026", 0) }} {{ nope|truncate(3) }}| {{ l|truncate(3) }} {{ e|truncate(3) }}|',
    '{{ long|truncate(56, false, "...", none) }} {{ long|truncate(55, false, "...", 0) }} {{ long|truncate(3, true) }}|',
    '{{ h|safe|truncate(5, true, "<", 0) }} {{ h|safe|truncate(5, true, "<"|safe, 0) }} {{ h|truncate(5, true, "<", 0) }}',
    # wordcount, center
    '{{ words|wordcount }} {{ nope|wordcount }} {{ 123|wordcount }} {{ none|wordcount }} {{ e|wordcount }} {{ "a-b_c d.e"|wordcount }}',
    '[{{ "abc"|center(8) }}|{{ "abc"|center(7) }}|{{ "ab"|center(7) }}|{{ "ab"|center(1) }}|{{ 12|center(6) }}|{{ nope|center(3) }}]',
    '[{{ "\u00e9\u00e9"|center(5) }}|{{ h|center(20) }}|{{ h|safe|center(20) }}|{{ e|center }}]',
    # reverse, list
    '{{ l|reverse|list }} {{ d|reverse|list }} {{ nope|reverse|list }} {{ "h\u00e9llo \u65e5\u672c"|reverse }} {{ e|reverse }}|',
    '{{ h|safe|reverse }} {{ h|reverse }} {{ 12|string|reverse }} {% for x in l|reverse %}{{ x }}{% endfor %}',
    '{{ "ab\u00e9"|list }} {{ d|list }} {{ nope|list }} {{ l|list }} {{ h|safe|list|first }} {{ e|list }}',
    # sort, unique, min, max, sum
    '{{ sl|sort }} {{ sl|sort(true) }} {{ sl|sort(false, true) }} {{ sl|sort(true, true) }}',
    '{{ l|sort }} {{ [1, 2.5, true, 0, -1.5]|sort }} {{ d|sort }} {{ "cba"|sort }} {{ nope|sort }} {{ one|sort }}',
    '{% for o in objs|sort(attribute="p") %}{{ o.n }}{% endfor %} {% for o in objs|sort(false, true, "n") %}{{ o.n }}{% endfor %}',
    '{{ objs|sort(false, false, "zz")|length }} {% for o in objs|sort(false, false, "o.zz") %}{{ o.n }}{% endfor %}',
    '{% for o in objs|sort(true, false, "o.k") %}{{ o.n }}{% endfor %} {{ nested|sort(false, false, 0) }}',
    '{{ sl|unique|list }} {{ sl|unique(true)|list }} {{ [1, 1.0, true, 2, "1", none, none]|unique|list }}',
    '{{ objs|unique(false, "n")|list|length }} {{ "abAB"|unique|join }} {{ nope|unique|list }} {{ d|unique|list }}',
    '{{ sl|min }} {{ sl|max }} {{ sl|min(true) }} {{ sl|max(true) }} {{ l|max }} {{ []|min }}|{{ "hello"|max }} {{ nope|min }}|',
    '{{ [1.0, 1]|min }} {{ [1, 1.0]|max }} {{ [true, 1]|max }} {{ d|min }} {{ d|max }} {{ one|min }}',
    '{{ (objs|min(false, "p")).n }} {{ (objs|max(attribute="n")).n }} {{ (objs|max(true, "n")).n }} {{ f|min }} {{ f|max }}',
    '{{ l|sum }} {{ [0.1, 0.2, 0.3]|sum }} {{ [1, 0.5, 2]|sum }} {{ []|sum }} {{ nope|sum }} {{ objs|sum("p") }}',
    '{{ l|sum(none, 10) }} {{ l|sum(start=0.5) }} {{ [true, true]|sum }} {{ objs|sum("o.k", 1) }} {{ f|sum }} {{ nested|sum(0) }}',
    '{{ [1e16, 1, 1]|sum }} {{ [1, 1e16, 1]|sum }} {{ [big, -1, 0.5]|sum }}',
]
FILTER_ERRORS = [
    '{{ nope|float }}', '{{ "x"|abs }}', '{{ nope|abs }}',
    "{{ 5|round(0, 'x') }}", '{{ "5"|round }}', '{{ 2.5|round(1.5) }}', '{{ nope|round }}',
    '{{ 1.7976931348623157e308|round(-308) }}', "{{ 1e308|round(2, 'ceil') }}",
    '{{ "aaa"|replace("a", "b", "1") }}', '{{ "aaa"|replace("a", "b", 1.0) }}', '{{ "a"|replace("a") }}',
    '{{ "abc"|truncate(2) }}', '{{ "abc"|truncate(3, false, "...", -1) }}', '{{ 12345|truncate(3) }}',
    '{{ nope|truncate(1) }}', '{{ "abc"|truncate(5, false, 1) }}',
    '{{ "x"|center(nope) }}', '{{ "x"|center("5") }}',
    '{{ 5|reverse }}', '{{ 5|list }}', '{{ none|list }}',
    '{{ [1, "a"]|sort }}', '{{ [none, 1]|sort }}', '{{ nested|sort(false, false, 1) }}', '{{ objs|min(false, "zz") }}',
    '{{ 5|unique|list }}', '{{ nested|unique|list }}', '{{ [1, "a"]|min }}', '{{ 5|max }}',
    '{{ ["a"]|sum }}', '{{ "ab"|sum }}', '{{ [1, nope]|sum }}', '{{ l|sum(none, "x") }}',
]
# what Python's big integers hold and squall's 64-bit ones do not: an error, not a wrong number
SQUALL_LIMITS = ['{{ (-big - 1)|abs }}', '{{ big|round(-1) }}', '{{ [big, 1]|sum }}']


def squall_render(tpl_dir, name, ctx):
    path = os.path.join(BUILD, f"tpl-ctx-{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump(ctx, f)
    r = subprocess.run([exe, "render", tpl_dir, name, path], capture_output=True, timeout=60)
    os.unlink(path)
    return r


def squall_form(case):
    """The case in the syntax squall has: keyword arguments as positional ones."""
    for a, b in (('sort(attribute="p")', 'sort(false, false, "p")'), ("sum(start=0.5)", "sum(none, 0.5)"),
                 ('max(attribute="n")', 'max(false, "n")')):
        case = case.replace(a, b)
    return case


import tempfile
with tempfile.TemporaryDirectory() as tmp:
    cases = FILTER_CASES
    for autoescape in (True, False):
        fenv = jinja2.Environment(loader=jinja2.FileSystemLoader(tmp), autoescape=autoescape)
        name = f"filters-{int(autoescape)}.html"
        with open(os.path.join(tmp, name), "w") as f:
            f.write(("" if autoescape else "{% autoescape false %}") + "\n".join(cases) +
                    ("" if autoescape else "{% endautoescape %}"))
        want = fenv.get_template(name).render(**FILTER_CTX).split("\n")
        with open(os.path.join(tmp, name), "w") as f:
            f.write(("" if autoescape else "{% autoescape false %}") + "\n".join(squall_form(c) for c in cases) +
                    ("" if autoescape else "{% endautoescape %}"))
        r = squall_render(tmp, name, FILTER_CTX)
        got = r.stdout.decode(errors="replace").split("\n")
        check(r.returncode == 0, f"filters (autoescape {autoescape}) render: {r.stderr.decode(errors='replace')}")
        for i, c in enumerate(cases):
            g = got[i] if i < len(got) else None
            check(g == want[i], f"autoescape {autoescape}: {c}\n       Jinja2: {want[i]!r}\n       squall: {g!r}")
    fenv = jinja2.Environment(autoescape=True)
    for i, c in enumerate(FILTER_ERRORS):
        try:
            fenv.from_string(c).render(**FILTER_CTX)
            jinja_fails = False
        except Exception:
            jinja_fails = True
        with open(os.path.join(tmp, "err.html"), "w") as f:
            f.write(squall_form(c))
        r = squall_render(tmp, "err.html", FILTER_CTX)
        msg = r.stderr.decode(errors="replace").strip()
        check(jinja_fails and r.returncode != 0 and "err.html:1:" in msg,
              f"refused by both: {c} (Jinja2 {'raises' if jinja_fails else 'does not'}; squall: {msg or r.stdout!r})")
    for c in SQUALL_LIMITS:
        beyond = abs(int(fenv.from_string(c).render(**FILTER_CTX))) >= 2**63
        with open(os.path.join(tmp, "err.html"), "w") as f:
            f.write(c)
        r = squall_render(tmp, "err.html", FILTER_CTX)
        msg = r.stderr.decode(errors="replace").strip()
        check(beyond and r.returncode != 0 and "a number too large" in msg,
              f"beyond 64 bits: {c} (squall: {msg or r.stdout!r})")
print(f"{len(failures)} failed" if failures else "all passed")
sys.exit(1 if failures else 0)
