"""Datasets: each returns tensors with the example's dataset index as its row."""
