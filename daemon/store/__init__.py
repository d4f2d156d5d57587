"""Storage: the catalog (the only SQLite), its migrations, the vector index (the only FAISS), records."""
