"""Super-resolution along one axis: its configuration, training, diffusion sampling and the run end to end."""
