"""Search: fusion of the BM25 and dense rankings, and the retriever over a loaded index."""
