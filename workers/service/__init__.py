"""The Kafka worker: its roles (router, owner, standby), changelogs, web pages, metrics, logs."""
