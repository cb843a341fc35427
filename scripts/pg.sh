#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: scripts/pg.sh start DIR PORT | stop DIR
# The server refuses to run as root, so it runs as the `postgres` user.
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?data dir}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
case "$cmd" in
  start)
    port=${3:?port}
    mkdir -p "$dir"
    chown postgres "$dir"
    chmod 700 "$dir"
    if [[ ! -f "$dir/PG_VERSION" ]]; then
      runuser -u postgres -- "$bin/initdb" -D "$dir" -A trust -U postgres >/dev/null
    fi
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir" -w -t 60 \
      -o "-k $dir -c listen_addresses=127.0.0.1 -p $port -c max_connections=400 -c fsync=on" \
      -l "$dir/log" start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir" -m fast stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
