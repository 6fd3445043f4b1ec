"""One registry idiom (layerprobe.registry) and the registries built on it."""

from __future__ import annotations

import importlib.util

import pytest

from layerprobe.errors import ConfigError, UnknownNameError
from layerprobe.registry import Registry


def test_register_as_call_and_decorator_then_get_list_and_miss():
    shapes: Registry[object] = Registry("shape")
    square = shapes.register("square", lambda side: side * side)

    @shapes.register("circle")
    def circle(r):
        return 3 * r * r

    assert shapes.get("square") is square and shapes.get("circle") is circle
    assert circle(2) == 12  # the decorator hands the function back unchanged
    assert shapes.names() == list(shapes) == ["square", "circle"]
    assert len(shapes) == 2 and "circle" in shapes and "triangle" not in shapes
    assert ["x"] not in shapes  # an unhashable name is simply not there
    with pytest.raises(UnknownNameError) as err:
        shapes.get("sqare")
    assert str(err.value) == (
        "unknown shape 'sqare'. Did you mean: square? Use one of square, circle."
    )
    with pytest.raises(UnknownNameError, match=r"^unknown shape \['x'\]\. Use one of"):
        shapes.get(["x"])  # e.g. a list where a job file wanted a name


def test_hint_replaces_the_list_and_a_duplicate_name_is_refused():
    tools: Registry[int] = Registry("tool", hint="Run `tools --list` ({names}).")
    tools.register("hammer", 1)
    with pytest.raises(UnknownNameError) as err:
        tools.get("saw")
    assert str(err.value) == "unknown tool 'saw'. Run `tools --list` (hammer)."
    with pytest.raises(ConfigError, match="^tool 'hammer' is registered already;"):
        tools.register("hammer", 2)
    with pytest.raises(ConfigError, match="registered already"):
        tools.register("hammer")(3)
    assert tools.get("hammer") == 1 and len(tools) == 1  # the first entry stays


def test_every_registry_of_the_package_is_a_registry():
    from layerprobe.cli import COMMANDS
    from layerprobe.jobs.stages import RUN
    from layerprobe.jobs.units import STAGES
    from layerprobe.pretrain.ladder import LADDER, Rung
    from layerprobe.probe.families import FAMILIES, Family
    from layerprobe.tasks.registry import TASKS, list_tasks

    for registry in (TASKS, FAMILIES, COMMANDS, RUN, LADDER):
        assert isinstance(registry, Registry)
    assert {t.name for t in list_tasks()} == set(TASKS) and "builtin/digits" in TASKS
    assert FAMILIES.names() == ["ridge", "logistic", "knn", "knn_weighted"]
    assert all(isinstance(f, Family) and "torch" in f.backends for f in FAMILIES.values())
    assert RUN.names() == list(STAGES)  # every stage of a plan has its unit function
    assert all(isinstance(r, Rung) and LADDER.get(r.name) is r for r in LADDER.values())
    assert "run" in COMMANDS and "tasks" in COMMANDS
    assert all(importlib.util.find_spec(COMMANDS.get(name)) for name in COMMANDS)


def test_misses_keep_their_messages():
    from layerprobe.probe import get_backend
    from layerprobe.probe.families import family_solver
    from layerprobe.tasks import get_task

    with pytest.raises(UnknownNameError) as err:
        get_task("builtin/digit")
    assert str(err.value).startswith("unknown task 'builtin/digit'. Did you mean: builtin/digits")
    assert str(err.value).endswith("or use folder:PATH for an image folder.")
    with pytest.raises(UnknownNameError) as err:
        get_backend("sklarn")
    assert str(err.value) == (
        "unknown probe backend 'sklarn'. Did you mean: sklearn? Use one of torch, cuml, sklearn."
    )
    with pytest.raises(UnknownNameError, match=r"^unknown probe family 'lasso'\. Use one of"):
        family_solver("lasso", "torch", device="cpu", precision="float64")
    with pytest.raises(ConfigError, match="^--backend cuml applies to the ridge probe; knn runs"):
        family_solver("knn", "cuml", device="cpu", precision="float64")


def test_a_task_name_is_registered_once():
    from layerprobe.tasks import get_task, list_tasks, register_task

    before = len(list_tasks())
    task = get_task("builtin/digits")
    with pytest.raises(ConfigError, match="^task 'builtin/digits' is registered already"):
        register_task(task)
    assert len(list_tasks()) == before and get_task("builtin/digits") is task
