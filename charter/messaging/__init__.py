"""Messaging: the event envelope, the transactional outbox and its relay, the broker
(kombu: RabbitMQ in production, a server-less transport by default), retries with
back-off, the dead-letter queue and idempotent consumers. See ``docs/messaging.md``."""
