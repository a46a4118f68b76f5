"""How many devices of a kind torch can use here: the one count behind every setting that names a device
(``embedding.device``, ``grounding.options.device``, ``retriever.device``), so each refuses a device this machine
lacks in one line instead of a torch traceback. torch is imported only when a count is asked for."""

from __future__ import annotations


def visible_devices(kind: str) -> int:
    """Devices of ``kind`` (``cuda``, ``mps``, ``xpu``, ``hpu``, ``npu``) torch can use; 0 when its backend is
    absent (``torch.xpu`` in older torch; hpu and npu exist only with their vendors' torch plugins) or broken."""
    import torch

    if kind == "mps":
        return int(torch.backends.mps.is_available())
    backend = getattr(torch, kind, None)
    try:
        return int(backend.device_count()) if backend is not None and backend.is_available() else 0
    except (AttributeError, RuntimeError):  # a backend module without these calls, or a broken driver
        return 0
