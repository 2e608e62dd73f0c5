"""The sub-commands of ``deepdenoise`` that offer a group of flags, by what they take: one volume
(they train on it), pairs of volumes, or a saved model. The settings tables (config.py,
noise_config.py) name them in each flag."""

SINGLE_VOLUME_COMMANDS = ("denoise", "demo")
PAIRED_COMMANDS = ("n2n", "supervised")
TRAINING_COMMANDS = SINGLE_VOLUME_COMMANDS + PAIRED_COMMANDS
PREDICTION_COMMANDS = TRAINING_COMMANDS + ("apply",)
