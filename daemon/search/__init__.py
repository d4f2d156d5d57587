"""Answering questions: queries to vectors, filters, duplicate grouping."""
