"""`python -m layerprobe` (also what `torchrun -m layerprobe` runs)."""

from layerprobe.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
