from auth.store import metadata
from charter.migrations import run_env

run_env(metadata)
