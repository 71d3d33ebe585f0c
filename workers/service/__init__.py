"""The Kafka worker: its roles (router, owner, standby), checkpoints, web pages, metrics, logs."""
