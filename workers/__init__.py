"""persona-stream: real-time customer segmentation on Kafka."""

__version__ = "0.1.0"
