"""Reference servers the governed read is compared with, written the way a competent user
would write them: they serve the same product row from the same SQLite file."""
