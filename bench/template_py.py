"""CPU µs per render of the 1,000-row table with Jinja2 and with Tornado's templates (the same
data as bench/template_render.c), for bench/template_compare.sh: the best of 5 batches, as
bench/template_render measures squall.
Usage: template_py.py TEMPLATE_DIR RENDERS"""
import os
import sys
import time

tdir, n = sys.argv[1], int(sys.argv[2])
rows = [{"id": i, "name": f"item <{i}> & \"co\" 'x'", "price": i * 3 + 0.5,
         "tags": ["red", "green & blue", f"t{i % 7}"]} for i in range(1, 1001)]
ctx = {"title": "Prices & <stock>", "rows": rows, "site": {"name": "squall", "year": 2026}}


def measure(name, fn):
    """timeit's way on a noisy machine: the best of 5 batches of n/5 renders"""
    for _ in range(5):
        fn()
    per = max(1, n // 5)
    best = None
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(per):
            out = fn()
        us = (time.process_time() - t0) / per * 1e6
        best = us if best is None else min(best, us)
    us = best
    print(f"{name} renders {n} cpu_us_per_render {us:.1f} bytes {len(out.encode() if isinstance(out, str) else out)}")


try:
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(tdir), autoescape=True)
    tpl = env.get_template("table.html")
    measure("jinja2", lambda: tpl.render(**ctx))
except ImportError:
    print("jinja2 not installed")
try:
    import tornado.template
    # Tornado's syntax: the same page (no blocks/loop.*; {% for %}/{% end %}, escaping on)
    src = ("<!doctype html>\n<html><head><title>{{ title }} - squall</title></head>\n<body>\n"
           "<h1>{{ title }}</h1>\n<table>{% for i, row in enumerate(rows) %}\n"
           "  <tr class=\"{{ 'odd' if (i + 1) % 2 == 1 else 'even' }}\"><td>{{ row['id'] }}</td>"
           "<td>{{ row['name'] }}</td><td>{{ row['price'] }}</td>\n    <td>{% for j, t in enumerate(row['tags']) %}"
           "<span>{{ t }}</span>{% if j < len(row['tags']) - 1 %}, {% end %}{% end %}</td></tr>{% end %}\n"
           "</table>\n<footer>{{ site['name'].upper() }} &middot; {{ site['year'] }}</footer>\n</body></html>")
    ttpl = tornado.template.Template(src)
    measure("tornado", lambda: ttpl.generate(**ctx))
except ImportError:
    print("tornado not installed")
