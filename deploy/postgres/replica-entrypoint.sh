#!/bin/sh
# Entry point of the compose `catalog-db-replica` service (runs as the postgres user).
# First start (empty data directory): wait for the primary, then pg_basebackup -R through
# the physical replication slot $REPLICATION_SLOT (created here, or reused when a previous
# standby left it), which writes standby.signal and primary_conninfo. Every start: run the
# server as a hot standby. The primary's pg_hba.conf (deploy/postgres/pg_hba.conf) admits
# replication for the postgres role with POSTGRES_PASSWORD (from deploy/compose.env).
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_HOST:=postgres}"
: "${PRIMARY_PORT:=5432}"
: "${REPLICATION_SLOT:=catalog_db_replica}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "POSTGRES_PASSWORD is not set: run charter secrets init" >&2
    exit 1
fi
export PGPASSWORD="$POSTGRES_PASSWORD"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres; do
        echo "waiting for the primary $PRIMARY_HOST:$PRIMARY_PORT" >&2
        sleep 2
    done
    slot_exists=$(psql -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -d postgres -Atc \
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$REPLICATION_SLOT'")
    create_slot="--create-slot"
    if [ "$slot_exists" = "1" ]; then
        create_slot=""
    fi
    rm -rf "${PGDATA:?}"/* 2>/dev/null || true
    # shellcheck disable=SC2086  # $create_slot is one flag or nothing
    pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -D "$PGDATA" \
        --write-recovery-conf --wal-method=stream --checkpoint=fast \
        $create_slot --slot="$REPLICATION_SLOT" --progress
    chmod 700 "$PGDATA"
    echo "standby of $PRIMARY_HOST:$PRIMARY_PORT made (slot $REPLICATION_SLOT)" >&2
fi

exec postgres -c hot_standby=on -c hot_standby_feedback=on
