"""Denoising: its configuration, the self-supervised and paired methods, training, inference, noise
models and saved models."""
