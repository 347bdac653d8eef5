"""Reproducible training of the llmroute predictor (not part of the installed package)."""
