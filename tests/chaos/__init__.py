"""The chaos run (``make chaos``): concurrent checkouts while services are killed."""
