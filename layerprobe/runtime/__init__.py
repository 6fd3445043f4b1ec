"""runtime: the machinery every room shares — devices, thread pools, atomic writes, hashing and
slugs, warnings. Floor 1: it imports nothing of layerprobe but the other basics."""
