# Sourced by .ci/run: a throw-away PostgreSQL server on 127.0.0.1 for the `xdream tune` tests.
# Installs Debian's postgresql when it is missing, starts it on a free port with its data in a
# temporary folder, creates a user and a database, exports XDREAM_TEST_POSTGRES_URL, and stops
# the server when CI exits.
pg_ctl_path=$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pg_ctl_path" ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pg_ctl_path=$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)
fi
PG_BIN=$(dirname "$pg_ctl_path")
PG_DIR=$(mktemp -d)
PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -o \
    "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR" start >/dev/null
trap 'as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true' EXIT
"$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres \
    -c "CREATE USER xdream PASSWORD 'xdream'" -c "CREATE DATABASE xdream OWNER xdream"
export XDREAM_TEST_POSTGRES_URL="postgresql://xdream:xdream@127.0.0.1:$PG_PORT/xdream"
