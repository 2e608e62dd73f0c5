"""Benchmark scripts: the side-by-side denoising benchmark and the sample-data builder (not installed)."""
