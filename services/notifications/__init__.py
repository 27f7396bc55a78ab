"""The notifications service: email and SMS messages sent through a provider adapter."""
