"""Evaluation: question sets, retrieval metrics, runs, ablations, reports, the data split and calibration."""
