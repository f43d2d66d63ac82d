"""HTTP on a unix-domain socket: curl --unix-socket straight to squall, and nginx in front with
proxy_pass http://unix:…: (the demo with --unix-socket and --xheaders)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "web"))
import demo_util as u  # noqa: E402

check = u.check




def curl(*args):
    r = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True,
                       timeout=20, text=True)
    body, _, code = r.stdout.rpartition("\n")
    return code, body


if not shutil.which("nginx"):
    print("nginx is not installed: skipped")
    raise SystemExit(77)
tmp = tempfile.mkdtemp(prefix="squall-unix-")
os.chmod(tmp, 0o755)  # nginx's worker (another user) reaches the socket
sock = os.path.join(tmp, "squall.sock")

env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=1")
log = tempfile.TemporaryFile(mode="w+")
proc = subprocess.Popen([os.path.join(u.BUILD, "examples", "demo"), "--port=0", "--https-port=off",
                         f"--unix-socket={sock}", "--xheaders", f"--static-dir={u.STATIC}"],
                        stdout=subprocess.PIPE, stderr=log, text=True, env=env)
proc.log = log
line = proc.stdout.readline()
check(line.startswith("listening on port"), f"the demo started ({line.strip()})")
nginx = None
try:
    check(os.path.exists(sock) and (os.stat(sock).st_mode & 0o777) == 0o666,
          "the socket file exists, mode 0666")
    code, body = curl("--unix-socket", sock, "http://localhost/json")
    check(code == "200", f"curl --unix-socket: {code}")
    j = json.loads(body) if code == "200" else {}
    check(j.get("remote_ip") == "unix", f"a unix client's remote_ip is 'unix' ({j.get('remote_ip')})")
    code, body = curl("--unix-socket", sock, "http://localhost/static/hello.txt")
    check(code == "200" and body == open(os.path.join(u.STATIC, "hello.txt")).read(),
          "a static file over the unix socket")

    nginx, lport = u.start_nginx(tmp, f"""  server {{
    @LISTEN@
    location / {{
      proxy_pass http://unix:{sock}:;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Real-IP $remote_addr;
    }}
  }}""")
    codes = []
    for _ in range(20):
        code, body = curl(f"http://127.0.0.1:{lport}/json")
        codes.append(code)
    check(codes == ["200"] * 20, f"20 requests through nginx -> unix socket ({set(codes)})")
    j = json.loads(body) if code == "200" else {}
    check(j.get("remote_ip") == "127.0.0.1",
          f"behind nginx, X-Real-IP gives the client's address ({j.get('remote_ip')})")
    code, body = curl("-X", "POST", "-d", "text=via nginx", f"http://127.0.0.1:{lport}/chat/send")
    check(code == "200" and json.loads(body).get("text") == "via nginx", "POST through nginx")
finally:
    if nginx:
        nginx.terminate()
        nginx.wait(10)
    u.stop(proc)
    check(not os.path.exists(sock), "the socket file is gone after the demo stopped")
    shutil.rmtree(tmp, True)
u.finish()
