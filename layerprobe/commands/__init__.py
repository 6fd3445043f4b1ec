"""Sub-commands of the `layerprobe` CLI: one module each, argument parsing only."""
