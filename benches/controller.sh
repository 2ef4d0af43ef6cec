#!/usr/bin/env bash
# The controller under a simulated fleet (prints, never asserts). Run by `make bench`
# (scripts/bench.sh builds the workspace in release and sets HOSTMANAGER_BIN; the controller
# and crates/loadgen's hostmanager-loadgen sit next to it). docs/scale.md discusses the numbers.
#
# For each backend: SQLite with BENCH_SQLITE_AGENTS (2 000) agents, a throwaway PostgreSQL 15
# cluster with BENCH_PG_AGENTS (20 000), reporting every BENCH_INTERVAL (10) s. The controller
# runs on CPU 0 (`taskset`), the load generator on CPU 1. After enrollment, BENCH_WARMUP_SECONDS
# (60) of warm-up, then BENCH_SECONDS (120) measured: report latency p50/p99, the controller's
# CPU (utime + stime from /proc/PID/stat) and RSS (VmRSS, VmHWM), the database's rows and bytes
# growth per minute. Then a restart (SIGTERM, start again on the same database) and the report
# rate over the BENCH_RESTART_SECONDS (60) after it against the steady rate, and the busiest
# period's. Aims (docs/scale.md): p99 < 100 ms at 20 000 agents on one core; the database flat
# after warm-up (events aside); the restart peak <= 2x. BENCH_BACKENDS="sqlite postgres" picks;
# BENCH_COMMIT_WINDOW sets deploy.commit_window; BENCH_PG_CPUS where PostgreSQL runs (default
# the generator's core); BENCH_LOADGEN_ARGS more hostmanager-loadgen flags (e.g. --idle);
# BENCH_KEEP_LOGS=DIR keeps the logs.
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir="$(dirname "${HOSTMANAGER_BIN:?run through make bench}")"
controller_bin="$bin_dir/hostmanager-controller"
loadgen_bin="$bin_dir/hostmanager-loadgen"
warmup="${BENCH_WARMUP_SECONDS:-60}"
measure="${BENCH_SECONDS:-120}"
after="${BENCH_RESTART_SECONDS:-60}"
interval="${BENCH_INTERVAL:-10}"
backends="${BENCH_BACKENDS:-sqlite postgres}"
# The generator's connection pool (requests in flight at most); see hostmanager-loadgen --help.
connections="${BENCH_CONNECTIONS:-2048}"
for tool in curl python3 taskset; do
    command -v "$tool" >/dev/null || { echo "controller: needs $tool" >&2; exit 1; }
done
for b in "$controller_bin" "$loadgen_bin"; do
    [ -x "$b" ] || { echo "controller: $b missing (cargo build --release --workspace)" >&2; exit 1; }
done
# Two cores: one each. One core: both share it (the numbers then say less).
if [ "$(nproc)" -ge 2 ]; then ctl_cpu=0; gen_cpu=1; else ctl_cpu=0; gen_cpu=0; fi
hz="$(getconf CLK_TCK)"
# Thousands of connections: the controller and the generator each hold one descriptor apiece.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work="$(mktemp -d /tmp/hm-bench-controller.XXXXXX)"
chmod 755 "$work"
controller="" loadgen="" pg=""
cleanup() {
    for pid in "$loadgen" "$controller"; do
        [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    done
    # Fast shutdown: the cluster is thrown away.
    [ -n "$pg" ] && { kill -INT "$pg" 2>/dev/null || true; wait "$pg" 2>/dev/null || true; }
    rm -rf "$work" || true
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Polls "$@" until it succeeds or $1 seconds pass.
await() { local limit="$1"; shift; local deadline=$(( $(date +%s) + limit )); until "$@"; do [ "$(date +%s)" -lt "$deadline" ] || { echo "controller bench: gave up waiting for: $*" >&2; return 1; }; sleep 0.2; done; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
# The value of key $2 in the last line of $1 starting with $3.
field() { grep "^$3" "$1" | tail -n 1 | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

start_controller() { # dir port
    taskset -c "$ctl_cpu" "$controller_bin" --data "$1/data" run --config "$1/controller.toml" >>"$1/controller.log" 2>&1 &
    controller=$!
    await 60 curl -fs -o /dev/null "http://127.0.0.1:$2/healthz"
}
stop_controller() {
    kill -TERM "$controller"
    wait "$controller" 2>/dev/null || true
    controller=""
}

# Database size in bytes and rows per table, as "bytes table=rows ...", for the backend.
db_sample() { # backend dir
    if [ "$1" = sqlite ]; then
        local db="$2/data/controller.db" bytes walfile=0
        bytes="$(stat -c %s "$db")"
        [ -f "$db-wal" ] && walfile="$(stat -c %s "$db-wal")"
        # The file and its WAL (which grows until a checkpoint copies it back).
        local line="$(( bytes + walfile )) walfile=$walfile"
        for t in $(sqlite3 "$db" "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name"); do
            line="$line $t=$(sqlite3 "$db" "SELECT count(*) FROM \"$t\"")"
        done
        echo "$line"
    else
        local line
        line="$(psql_bench -c 'SELECT pg_database_size(current_database())')"
        line="$line wal=$(psql_bench -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")"
        line="$line dead=$(psql_bench -c 'SELECT coalesce(sum(n_dead_tup),0) FROM pg_stat_user_tables')"
        # The two tables that grow or churn, with their TOAST and indexes.
        line="$line size.instances=$(psql_bench -c "SELECT pg_total_relation_size('instances')")"
        line="$line size.events=$(psql_bench -c "SELECT pg_total_relation_size('events')")"
        for t in $(psql_bench -c "SELECT relname FROM pg_stat_user_tables WHERE relname NOT LIKE '_sqlx%' ORDER BY relname"); do
            line="$line $t=$(psql_bench -c "SELECT count(*) FROM \"$t\"")"
        done
        echo "$line"
    fi
}
psql_bench() { psql -X -At -h 127.0.0.1 -p "$pg_port" -U postgres -d bench "$@"; }

# Rows and bytes per minute between two samples taken $3 seconds apart.
db_growth() { # before after seconds
    python3 - "$1" "$2" "$3" <<'PY'
import sys
def parse(s):
    parts = s.split()
    return int(parts[0]), dict((k, int(v)) for k, v in (p.split("=") for p in parts[1:]))
(b0, t0), (b1, t1), secs = parse(sys.argv[1]), parse(sys.argv[2]), float(sys.argv[3])
per_min = 60.0 / secs
mib = 1024 * 1024
wal = t1.pop("wal", None), t0.pop("wal", None)
walfile = t1.pop("walfile", None), t0.pop("walfile", None)
dead = t1.pop("dead", None); t0.pop("dead", None)
sizes = {k[5:]: (t0.pop(k, 0), t1.pop(k)) for k in list(t1) if k.startswith("size.")}
rows = {k: t1[k] - t0.get(k, 0) for k in t1}
total = sum(rows.values())
changed = ", ".join(f"{k} {v * per_min:+.0f}" for k, v in sorted(rows.items()) if v) or "none"
print(f"  database: {total * per_min:+.0f} rows/min ({changed}), {(b1 - b0) * per_min / mib:+.2f} MiB/min "
      f"({b0 / mib:.1f} -> {b1 / mib:.1f} MiB); rows now: " + ", ".join(f"{k} {v}" for k, v in sorted(t1.items())))
if walfile[0] is not None:
    print(f"  database: of which the WAL file {walfile[1] / mib:.1f} -> {walfile[0] / mib:.1f} MiB")
if sizes:
    print("  database: by table " + ", ".join(f"{k} {(b - a) * per_min / mib:+.2f} MiB/min (now {b / mib:.1f} MiB)" for k, (a, b) in sorted(sizes.items())))
if wal[0] is not None:
    print(f"  database: WAL written {(wal[0] - wal[1]) * per_min / mib:.1f} MiB/min, dead tuples now {dead}")
PY
}

start_postgres() {
    local bin=/usr/lib/postgresql/15/bin
    [ -x "$bin/initdb" ] || bin="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"
    local dir="$work/pg" run=()
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        # PostgreSQL refuses to run as root: the test suite's system user (tests/support/postgres.rs).
        id -u hostmanager-pg >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin hostmanager-pg
        chown hostmanager-pg: "$dir"
        run=(setpriv "--reuid=$(id -u hostmanager-pg)" "--regid=$(id -g hostmanager-pg)" --clear-groups --)
    fi
    "${run[@]}" "$bin/initdb" -U postgres --auth=trust -E UTF8 --locale=C -D "$dir/data" >"$dir/initdb.log" 2>&1
    pg_port="$(free_port)"
    # Stock settings (durable commits) but for the connection limit: what an operator runs.
    # BENCH_PG_CPUS: where the server runs (a taskset list; default the generator's core, so
    # the controller's core is its own; "all" lets it float).
    local cpus="${BENCH_PG_CPUS:-$gen_cpu}"
    [ "$cpus" = all ] && cpus="0-$(( $(nproc) - 1 ))"
    taskset -c "$cpus" "${run[@]}" "$bin/postgres" -D "$dir/data" -h 127.0.0.1 -p "$pg_port" -k "$dir" -c max_connections=100 >"$dir/postgres.log" 2>&1 &
    pg=$!
    await 60 "$bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -U postgres
    psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c 'CREATE DATABASE bench'
    echo "($("$bin/postgres" --version), stock settings but max_connections, on CPUs $cpus)"
}

run_backend() { # backend agents
    local backend="$1" agents="$2" dir="$work/$1" port
    mkdir -p "$dir"
    port="$(free_port)"
    {
        echo "[server]"; echo "listen = \"127.0.0.1:$port\""
        echo "[hosts]"; echo "interval = \"${interval}s\""
        # BENCH_COMMIT_WINDOW: the group commit's extra wait (deploy.commit_window, 0s by default).
        if [ -n "${BENCH_COMMIT_WINDOW:-}" ]; then echo "[deploy]"; echo "commit_window = \"$BENCH_COMMIT_WINDOW\""; fi
        if [ "$backend" = postgres ]; then
            echo "[database]"; echo "url = \"postgres://postgres@127.0.0.1:$pg_port/bench\""
        fi
    } >"$dir/controller.toml"
    start_controller "$dir" "$port"
    local gen_log="$dir/loadgen.log"
    taskset -c "$gen_cpu" "$loadgen_bin" --url "http://127.0.0.1:$port" \
        --admin-token-file "$dir/data/admin.token" --agents "$agents" \
        --interval-secs "$interval" --connections "$connections" ${BENCH_LOADGEN_ARGS:-} >"$gen_log" 2>"$dir/loadgen.err" &
    loadgen=$!
    await 3600 grep -q '^enrolled' "$gen_log"
    sleep "$warmup"
    kill -USR1 "$loadgen" # segment 0: enrollment and warm-up
    local t0 c0 d0 t1 c1 d1 rss hwm
    t0="$(now)"; c0="$(cpu_ticks "$controller")"; d0="$(db_sample "$backend" "$dir")"
    sleep "$measure"
    kill -USR1 "$loadgen" # segment 1: steady
    t1="$(now)"; c1="$(cpu_ticks "$controller")"; d1="$(db_sample "$backend" "$dir")"
    rss="$(status_kib "$controller" VmRSS)"; hwm="$(status_kib "$controller" VmHWM)"
    # The restart: SIGTERM (open requests finish, the last group commits), start again.
    local r0 r1 r2 c2 c3 t3
    r0="$(now)"; stop_controller; r1="$(now)"
    start_controller "$dir" "$port"; r2="$(now)"
    kill -USR1 "$loadgen" # segment 2: down
    c2="$(cpu_ticks "$controller")"
    sleep "$after"
    kill -USR1 "$loadgen" # segment 3: the minute after the restart
    t3="$(now)"; c3="$(cpu_ticks "$controller")"
    sleep 0.5
    local steady_rate after_rate peak
    steady_rate="$(grep '^segment n=1 ' "$gen_log" | tr ' ' '\n' | awk -F= '$1 == "rate" { print $2 }')"
    after_rate="$(grep '^segment n=3 ' "$gen_log" | tr ' ' '\n' | awk -F= '$1 == "rate" { print $2 }')"
    peak="$(awk -v from="$r2" -v to="$t3" '$1 == "period" { split($2, t, "="); if (t[2] > from && t[2] <= to + 0.1) { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "rate" && kv[2] > max) max = kv[2] } } } END { print max + 0 }' "$gen_log")"
    local seg="segment n=1 "
    echo "controller on $backend: $agents agents every ${interval} s, commit window ${BENCH_COMMIT_WINDOW:-0s}${BENCH_LOADGEN_ARGS:+, loadgen $BENCH_LOADGEN_ARGS} (controller on CPU $ctl_cpu, load generator on CPU $gen_cpu with $connections connections, $(nproc) cores)"
    echo "  enrollment: $(field "$gen_log" agents enrolled) agents in $(field "$gen_log" secs enrolled) s ($(field "$gen_log" rate enrolled)/s), $(field "$gen_log" failed enrolled) failed"
    echo "  steady $(field "$gen_log" secs "$seg") s after ${warmup} s warm-up: $(field "$gen_log" rate "$seg") reports/s, latency p50 $(field "$gen_log" p50_ms "$seg") ms, p99 $(field "$gen_log" p99_ms "$seg") ms, max $(field "$gen_log" max_ms "$seg") ms; busy (429/503) $(field "$gen_log" busy "$seg"), errors $(field "$gen_log" errors "$seg"); generator lag p99 $(field "$gen_log" lag_p99_ms "$seg") ms"
    # The generator sends late when its pool or its core is the limit: then the numbers
    # understate the load and say so.
    if [ "$(calc "int($(field "$gen_log" lag_p99_ms "$seg") > 1000)")" = 1 ]; then
        echo "  WARNING: the load generator fell behind (lag p99 over 1 s): the offered load was lower than $agents agents"
    fi
    echo "  controller: CPU $(calc "round(($c1 - $c0) / $hz / ($t1 - $t0) * 100, 1)") % of one core, RSS $(( rss / 1024 )) MiB (peak $(( hwm / 1024 )) MiB)"
    db_growth "$d0" "$d1" "$(calc "$t1 - $t0")"
    echo "  restart: stopped in $(calc "round($r1 - $r0, 2)") s, answering again $(calc "round($r2 - $r1, 2)") s later ($(field "$gen_log" errors "segment n=2 ") reports failed meanwhile, retried after the backoff); over the next $(field "$gen_log" secs "segment n=3 ") s: $after_rate reports/s = $(calc "round($after_rate / $steady_rate, 2)")x steady, busiest 5 s period $peak/s = $(calc "round($peak / $steady_rate, 2)")x; p99 $(field "$gen_log" p99_ms "segment n=3 ") ms, busy $(field "$gen_log" busy "segment n=3 "), errors $(field "$gen_log" errors "segment n=3 "); controller CPU $(calc "round(($c3 - $c2) / $hz / ($t3 - $r2) * 100, 1)") %"
    kill -TERM "$loadgen"; wait "$loadgen" 2>/dev/null || true; loadgen=""
    stop_controller
    if [ -n "${BENCH_KEEP_LOGS:-}" ]; then
        mkdir -p "$BENCH_KEEP_LOGS/$backend"
        cp "$gen_log" "$dir/loadgen.err" "$dir/controller.log" "$BENCH_KEEP_LOGS/$backend/"
    fi
}

for backend in $backends; do
    case "$backend" in
        sqlite)
            command -v sqlite3 >/dev/null || { echo "controller: needs the sqlite3 CLI" >&2; exit 1; }
            run_backend sqlite "${BENCH_SQLITE_AGENTS:-2000}" ;;
        postgres)
            command -v psql >/dev/null || { echo "controller: needs psql (scripts/deps.sh test)" >&2; exit 1; }
            start_postgres
            run_backend postgres "${BENCH_PG_AGENTS:-20000}" ;;
        *) echo "controller: unknown backend $backend" >&2; exit 1 ;;
    esac
done
