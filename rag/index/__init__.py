"""Index artifacts: BM25 over Kiwi morphemes (sparse), e5 vectors in faiss (dense), and
the store that builds, versions, validates and atomically publishes them."""
