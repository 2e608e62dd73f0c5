"""Building blocks every run uses: volumes and their files, checks, progress, devices, metrics, tiling,
normalisation, noise simulation, the settings machinery and the one training loop."""
