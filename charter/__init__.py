"""Charter's shared runtime library: config, security, observability, persistence, CLI."""
