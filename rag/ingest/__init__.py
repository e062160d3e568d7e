"""Ingest: the corpus manifest and texts -> section trees -> chunks with exact offsets."""
