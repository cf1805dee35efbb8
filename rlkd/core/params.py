"""Guard over an env's per-env ``params``: a non-finite write is refused at the next step.

``env.params`` are plain tensors that domain randomisation and sim-to-real code write into. A NaN
or Inf written there (a bad suite value, a division by zero upstream) would flow into the
dynamics and the privileged ``critic`` observation and surface much later, e.g. as a crashed PPO
batch. :class:`ParamGuard` checks them where they are consumed, cheaply:

* per step it compares each param's tensor identity and torch version counter with the ones it
  last checked (a few microseconds for a dozen params, whatever ``num_envs`` is); torch bumps the
  counter on every in-place write (``params[k][ids] = v``, ``copy_``, ``fill_``, ``mul_``, ...),
  and assigning a new tensor changes the identity;
* only a param that changed is scanned (one ``isfinite().all()``), and only a failed scan looks
  for the offending env ids.

Writes that bypass torch's version counter (through ``tensor.numpy()`` or ``.data``) are not
seen until the next torch write; :meth:`ParamGuard.check` with ``force=True`` scans everything.
The MuJoCo backend (:mod:`rlkd.sim.mujoco`) applies the same scheme to the physics params it
pushes into MuJoCo.
"""

from __future__ import annotations

import torch


def _version(t: torch.Tensor) -> int | None:
    try:
        return t._version
    except (AttributeError, RuntimeError):  # inference-mode tensors have no version counter
        return None


class ParamGuard:
    """Checks that every tensor of an env's ``params`` dict is ``(num_envs, ...)`` and finite.

    Args:
        num_envs: the leading size every param must have.
    """

    def __init__(self, num_envs: int):
        self.num_envs = num_envs
        #: ``name -> (tensor, version)`` last seen valid (holds the tensor so its id is not reused).
        self._seen: dict[str, tuple[torch.Tensor, int | None]] = {}

    def check(self, params: dict[str, torch.Tensor], force: bool = False) -> None:
        """Raise ``ValueError`` naming the param and (up to 10) env ids if a param written since
        the last check is not finite or has the wrong shape; ``force`` scans every param."""
        for name, t in params.items():
            seen = self._seen.get(name)
            version = _version(t) if isinstance(t, torch.Tensor) else None
            if not force and seen is not None and seen[0] is t and version is not None \
                    and seen[1] == version:
                continue
            self._scan(name, t)
            self._seen[name] = (t, version)

    def _scan(self, name: str, t) -> None:
        if not isinstance(t, torch.Tensor) or t.ndim < 1 or t.shape[0] != self.num_envs:
            raise ValueError(f"params[{name!r}] must be a tensor of shape ({self.num_envs}, ...) "
                             f"(one row per env), got {getattr(t, 'shape', type(t).__name__)}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = (~torch.isfinite(t)).reshape(self.num_envs, -1).any(dim=1).nonzero().squeeze(-1)
            vals = (f" (values {t[bad[:3]].tolist()}{' ...' if bad.numel() > 3 else ''})"
                    if t.ndim == 1 else "")
            raise ValueError(f"params[{name!r}] is not finite (NaN/Inf) for env ids "
                             f"{bad[:10].tolist()}{' ...' if bad.numel() > 10 else ''}{vals}; "
                             f"every param must be a finite number")


__all__ = ["ParamGuard"]
