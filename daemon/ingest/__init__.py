"""Getting files in: scanning, watching, settling, decoding, embedding and writing them (the one writer)."""
