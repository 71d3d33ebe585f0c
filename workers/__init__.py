"""persona-stream: real-time customer segmentation on Kafka."""

from workers.compiled import install_pure_finder

__version__ = "0.1.0"

install_pure_finder()
