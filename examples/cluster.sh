#!/usr/bin/env bash
# The shape of a multi-host deployment on one machine (`make cluster`): one redis-server, the
# demo on two "hosts" (two instances on their own ports, each with PROCESSES worker processes
# sharing its port), and nginx in front as the load balancer — WebSocket upgrades and long
# polls proxied.  The chat is one room across every process of every instance.
#
#   examples/cluster.sh [BUILD_DIR]        (BUILD_DIR: build/release)
#
# Environment: CLUSTER_PORT (nginx, default 8080), CLUSTER_PROCESSES (per instance, default
# 2), CLUSTER_REDIS_PORT (default 6380), CLUSTER_DEMO_PORTS (default "8101 8102"),
# CLUSTER_SECONDS (stop after that many seconds; default: run until Ctrl-C).
# Each piece is an ordinary command, printed as it starts: on real hosts, run the same
# commands on each machine with the addresses changed.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
lb_port=${CLUSTER_PORT:-8080}
procs=${CLUSTER_PROCESSES:-2}
redis_port=${CLUSTER_REDIS_PORT:-6380}
read -r -a demo_ports <<< "${CLUSTER_DEMO_PORTS:-8101 8102}"
run_dir=$(mktemp -d -t squall-cluster-XXXXXX)
pids=()

cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

for cmd in redis-server nginx; do
  command -v "$cmd" >/dev/null || { echo "cluster: $cmd is not installed (make test-deps)" >&2; exit 1; }
done
[ -x "$build/examples/demo" ] || { echo "cluster: $build/examples/demo is not built (make build)" >&2; exit 1; }

wait_port() { # PORT PID: until 127.0.0.1:PORT accepts, or PID exits
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

start() { # NAME COMMAND...: in the background, logged to $run_dir/NAME.log
  local name=$1
  shift
  echo "cluster: $name: $*"
  "$@" > "$run_dir/$name.log" 2>&1 &
  pids+=($!)
}

# 1. the broker
start redis redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$run_dir"
wait_port "$redis_port" "${pids[-1]}" || { cat "$run_dir/redis.log"; exit 1; }

# 2. the demo on each "host": PROCESSES workers on one port, the chat through Redis
for i in "${!demo_ports[@]}"; do
  start "demo$i" "$build/examples/demo" --port "${demo_ports[$i]}" --https-port off \
    --processes "$procs" --redis "redis://127.0.0.1:$redis_port/0"
  wait_port "${demo_ports[$i]}" "${pids[-1]}" || { cat "$run_dir/demo$i.log"; exit 1; }
done

# 3. the load balancer
upstream=""
for p in "${demo_ports[@]}"; do upstream+="    server 127.0.0.1:$p;"$'\n'; done
cat > "$run_dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $run_dir/nginx.pid;
error_log $run_dir/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $run_dir; proxy_temp_path $run_dir; fastcgi_temp_path $run_dir;
  uwsgi_temp_path $run_dir; scgi_temp_path $run_dir;
  # WebSocket upgrades pass through; other requests keep their upstream connections alive
  map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
  upstream squall {
$upstream    keepalive 32;
  }
  server {
    listen 127.0.0.1:$lb_port;
    location / {
      proxy_pass http://squall;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_read_timeout 60s;   # long polls wait up to 30 s
      proxy_buffering off;
    }
  }
}
EOF
start nginx nginx -c "$run_dir/nginx.conf" -p "$run_dir" -e "$run_dir/nginx-error.log"
wait_port "$lb_port" "${pids[-1]}" || { cat "$run_dir/nginx.log" "$run_dir/nginx-error.log"; exit 1; }

echo "cluster: ready — http://127.0.0.1:$lb_port/chat (nginx), instances on ${demo_ports[*]}," \
  "$procs processes each, one room through redis://127.0.0.1:$redis_port (logs in $run_dir)"
if [ -n "${CLUSTER_SECONDS:-}" ]; then
  sleep "$CLUSTER_SECONDS"
else
  wait -n "${pids[@]}" || true
  echo "cluster: a piece exited; stopping the others" >&2
fi
