"""Evaluation: question sets, retrieval metrics, runs, ablations, reports, answer quality, the data split and training."""
