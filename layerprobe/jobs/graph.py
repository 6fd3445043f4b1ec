"""Which units may run now: a unit runs once all its dependencies succeeded; a failed unit
blocks everything downstream of it and nothing else."""

from __future__ import annotations

import heapq
from collections import defaultdict

from layerprobe.jobs.units import Plan


class Graph:
    """The units still to do, with dependency counts; ready units come out in plan order
    (one model's units together, so a worker reuses the model it built)."""

    def __init__(self, plan: Plan, done: list[bool]):
        self.waiting: dict[int, int] = {}
        self.dependents: dict[int, list[int]] = defaultdict(list)
        self.ready: list[int] = []
        self.blocked: list[int] = []
        for i, unit in enumerate(plan.units):
            if done[i]:
                continue
            missing = 0
            for d in unit.deps:
                if not done[d]:
                    missing += 1
                    self.dependents[d].append(i)
            if missing:
                self.waiting[i] = missing
            else:
                self.ready.append(i)
        heapq.heapify(self.ready)
        self.todo = len(self.waiting) + len(self.ready)

    def pop(self) -> int | None:
        """The next ready unit, or None."""
        return heapq.heappop(self.ready) if self.ready else None

    def pop_all(self) -> list[int]:
        """Every ready unit, in plan order."""
        out = sorted(self.ready)
        self.ready = []
        return out

    def finish(self, i: int, ok: bool) -> list[int]:
        """Record unit ``i``'s end; returns the units it blocks (all downstream) if it failed."""
        if ok:
            for j in self.dependents.pop(i, ()):
                self.waiting[j] -= 1
                if not self.waiting[j]:
                    del self.waiting[j]
                    heapq.heappush(self.ready, j)
            return []
        blocked, stack = [], list(self.dependents.pop(i, ()))
        while stack:
            j = stack.pop()
            if self.waiting.pop(j, None) is not None:
                blocked.append(j)
                stack.extend(self.dependents.pop(j, ()))
        self.blocked += blocked
        return sorted(blocked)
