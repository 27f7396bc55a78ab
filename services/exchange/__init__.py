"""The exchange service: currency rates and conversions, stale-but-served when the source fails."""
