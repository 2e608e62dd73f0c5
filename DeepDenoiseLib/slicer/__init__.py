"""The Slicer side: panel settings, volume nodes, background jobs and the panel's decisions.

Nothing here imports torch, SimpleITK, scipy or safetensors at module level: the Slicer module imports
these modules while Slicer starts, before PyTorch may be installed."""
