"""``python -m layerprobe.tasks.builtin``: time the generation of the whole built-in suite."""

from layerprobe.tasks.builtin.timing import main

raise SystemExit(main())
