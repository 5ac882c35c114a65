"""Parquet I/O: versioned schemas, atomic writes, dataset loaders, poisoning."""
