"""Answers: candidate lines, evidence, composition, citations and abstention."""
