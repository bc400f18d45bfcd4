"""The bottom layer: what every other package may use (user errors, atomic files, the command-line helper,
device and precision). It imports nothing of the project."""
