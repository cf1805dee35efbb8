"""The humanoid's two action modes as functions: ``absolute`` (a in [-1, 1] maps linearly onto
each joint's range) and ``residual`` (offsets of up to ``residual_scale`` rad from a reference
frame's joint angles), and re-expressing actions from one mode in the other; :class:`ActionModes`
holds the env's methods on them."""

from __future__ import annotations

import torch

ACTION_MODES = ("absolute", "residual")


def pd_targets(actions: torch.Tensor, mode: str, reference_q: torch.Tensor | None,
               q_mid: torch.Tensor, q_half: torch.Tensor,
               residual_scale: float | torch.Tensor) -> torch.Tensor:
    """``(N, D)`` PD targets, rad, of ``actions (N, D)`` in ``mode``; ``reference_q (N, D)``
    (rad) is the reference frame a residual action offsets (unused in absolute mode);
    ``residual_scale`` rad, one for all or ``(N, 1)`` per env; targets stay in the joint range
    ``q_mid +- q_half`` ``(D,)``."""
    if mode == "residual":
        return torch.minimum(torch.maximum(reference_q + residual_scale * actions,
                                           q_mid - q_half), q_mid + q_half)
    return q_mid + actions * q_half


def convert_actions(actions: torch.Tensor, src: str, dst: str, reference_q: torch.Tensor,
                    q_mid: torch.Tensor, q_half: torch.Tensor,
                    residual_scale: float | torch.Tensor) -> torch.Tensor:
    """``actions (N, D)`` given in mode ``src`` re-expressed in mode ``dst`` (clamped to
    [-1, 1]): the action of mode ``dst`` with the same PD targets, for the reference frame
    ``reference_q (N, D)`` rad that a residual action offsets."""
    target = pd_targets(actions, src, reference_q, q_mid, q_half, residual_scale)
    if dst == "residual":
        scale = residual_scale.clamp_min(1e-9) if isinstance(residual_scale, torch.Tensor) \
            else max(residual_scale, 1e-9)
        return ((target - reference_q) / scale).clamp(-1.0, 1.0)
    return ((target - q_mid) / q_half).clamp(-1.0, 1.0)


class ActionModes:
    """Mixin of :class:`~rlkd.envs.humanoid.env.HumanoidMotionEnv`: its actions read in either
    mode for the coming step (the env's ``q_mid``, ``q_half``, ``_reference``, ``_next_step``
    and, for the residual range, :meth:`~rlkd.envs.humanoid.recovery.FailStateRecovery.
    residual_range`)."""

    def pd_targets(self, actions: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """``(N, 28)`` PD targets (rad) of ``actions (N, 28)`` for the coming step, read in
        ``mode`` (default: the env's ``action_mode``)."""
        mode = mode or self.cfg.action_mode
        nxt = self._reference(None, self._next_step) if mode == "residual" else None
        return pd_targets(actions, mode, None if nxt is None else nxt.joint_pos, self.q_mid,
                          self.q_half, 0.0 if nxt is None else self.residual_range(nxt))

    def to_absolute(self, actions: torch.Tensor, mode: str) -> torch.Tensor:
        """``(N, 28)`` absolute actions in [-1, 1] giving the same PD targets in the coming step
        as ``actions (N, 28)`` read in ``mode`` (``"residual"``: offsets from the next reference
        frame, as a residual expert acts; ``"absolute"``: returned as they are). How a residual
        expert's actions become labels for a student that acts in absolute mode."""
        if mode not in ACTION_MODES:
            raise ValueError(f"mode must be 'absolute' or 'residual', got {mode!r}")
        if mode == "absolute":
            return actions
        nxt = self._reference(None, self._next_step)
        return convert_actions(actions, "residual", "absolute", nxt.joint_pos, self.q_mid,
                               self.q_half, self.residual_range(nxt))
