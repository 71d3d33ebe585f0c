"""Where the pipeline's state lives: profile stores (memory, RocksDB) and saved state files."""
