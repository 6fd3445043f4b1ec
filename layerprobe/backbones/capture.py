"""Reading layers out of one forward pass with hooks, stopping after the deepest one.

Forward hooks work on any ``nn.Module`` (timm, torchvision, user code; no FX tracing). Each
hook pools its output at once, on the input's device, so no full-size map outlives its
layer. When the last requested site has fired, the hook raises :class:`_StopForward`, which
unwinds the forward pass: nothing past the deepest requested layer is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from layerprobe.backbones.families import Site


class _StopForward(Exception):
    """Raised inside a hook once every requested site has been read."""


def first_tensor(value) -> torch.Tensor | None:
    """A module's output (or input args) as one tensor: itself, or the first tensor in a tuple/list."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            if isinstance(item, torch.Tensor):
                return item
    return None


def run_sites(
    model: nn.Module,
    x: torch.Tensor,
    sites: Iterable[Site],
    *,
    on_read: Callable[[Site, torch.Tensor | None], None],
    stop_early: bool = True,
) -> set[Site]:
    """Run ``model(x)`` once and call ``on_read(site, tensor)`` the first time each site fires.

    Parameters
    ----------
    sites : where to read (module output, or module input for ``hook="input"``).
    on_read : receives the tensor (None when the module's output holds no tensor).
    stop_early : stop the forward pass as soon as every site has been read.

    Returns
    -------
    The sites that never fired (modules the forward pass does not call).
    """
    modules = dict(model.named_modules())
    pending = set(sites)
    handles = []

    def read(site: Site, value) -> None:
        if site not in pending:  # a module called twice: its first call counts
            return
        pending.discard(site)
        on_read(site, first_tensor(value))
        if stop_early and not pending:
            raise _StopForward

    try:
        for site in list(pending):
            module = modules[site.module]
            if site.hook == "input":
                handles.append(
                    module.register_forward_pre_hook(
                        lambda m, args, s=site: read(s, args), prepend=True
                    )
                )
            else:
                handles.append(
                    module.register_forward_hook(
                        lambda m, args, out, s=site: read(s, out), prepend=True
                    )
                )
        if pending:
            with torch.no_grad():
                model(x)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return pending
