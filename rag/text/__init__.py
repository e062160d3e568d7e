"""Text helpers shared by every stage: normalisation of everyday forms, Kiwi analysis, string and file helpers."""
