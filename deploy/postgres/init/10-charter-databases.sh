#!/bin/sh
# One role and one database per Charter component, each database owned by its role and
# closed to every other role. The postgres image runs this once, on an empty data
# directory, with the env file `charter secrets init` wrote (<COMPONENT>_DB_PASSWORD,
# CHARTER_DB_PREFIX). tests/deploy/test_compose_run.py runs it against a local server.
set -eu

prefix="${CHARTER_DB_PREFIX:-charter}"
components="${CHARTER_DB_COMPONENTS:-auth catalog cart orders payments exchange loyalty notifications}"

for component in $components; do
    variable="$(echo "$component" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
    password="$(printenv "$variable" || true)"
    if [ -z "$password" ]; then
        echo "$variable is not set: run charter secrets init" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
         --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" \
         -v role="${prefix}_${component}" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
    echo "database ${prefix}_${component} created"
done
