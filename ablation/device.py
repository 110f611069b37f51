"""Which device a run, an evaluation or an upscale uses: one rule for every command.

``auto`` is CUDA when this machine has it, else the CPU. Asking for ``cuda`` on a machine
without CUDA is refused at once with a one-line error, instead of failing later inside a
library call (or, worse, silently running on another device than the one named).
"""

from __future__ import annotations

import torch

from ablation.errors import ConfigError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' / None -> cuda if available else cpu; otherwise ``torch.device(device)``.

    Raises ConfigError for a device name torch doesn't know or one this machine lacks.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available here; "
                          "use --device cpu (or auto)")
    return dev
