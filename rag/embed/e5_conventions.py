"""What multilingual-e5 expects of its input text: the query/passage prefixes and the
special-token strings of its vocabulary.

Kept apart because both sides need them: the converter writes them into the
sentence-transformers folder (prompts, tokenizer), the encoder prepends the prefixes and
strips the special-token strings from user text. Neither has to import the other.
"""

from __future__ import annotations

__all__ = ["PASSAGE_PREFIX", "QUERY_PREFIX", "SPECIAL_TOKENS"]

#: e5 models are trained with these prefixes; retrieval quality drops without them.
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "

#: The vocabulary's control tokens; as literal text they would be read as controls.
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
