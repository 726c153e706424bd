"""Product search: keyword (sparse BM25) + semantic (faiss) retrieval, fusion, learning-to-rank.

Entry point for callers: `soutui.search.engine.SearchEngine` (build / load / search).
"""
