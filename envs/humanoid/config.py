"""Configuration of the humanoid motion-tracking task (``HumanoidMotion-v0``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HumanoidMotionConfig:
    """Every knob of ``HumanoidMotion-v0``; override any field by keyword in ``rlkd.make``."""

    # --- reference motion
    motion: str = "walk"
    """Clips to track, comma-separated: procedural kinds (``walk``, ``turn``, ``jog_in_place``,
    ``squat``, ``wave``) and/or paths to ``.npz`` / ``.bvh`` files (BVH is retargeted)."""
    motion_mode: str = "wrap"
    """``"wrap"``: clips loop (the root carries on); ``"clamp"``: hold the last frame."""
    future_steps: tuple[int, ...] = (1, 3, 6)
    """Reference frames in the observation, as control steps ahead of the current time."""

    # --- simulation
    backend: str = "cpu"
    """``"cpu"`` (native MuJoCo on a thread pool) or ``"warp"`` (MuJoCo Warp)."""
    num_threads: int = 0
    """CPU backend threads (0 = the cores this process may use)."""
    frame_skip: int = 6
    """Physics steps (5 ms each) per control step: 6 gives 33.3 Hz control."""

    # --- action
    action_mode: str = "absolute"
    """``"absolute"``: actions map linearly onto each joint's range (the PD target itself; what
    a student without access to the reference must produce). ``"residual"``: PD target = the
    next reference frame's angle + ``residual_scale x action`` (the env injects the reference:
    for experts, which see it anyway; much faster to train)."""
    residual_scale: float = 0.5
    """Largest residual around the reference in ``residual`` mode, rad."""

    # --- reward (DeepMimic terms plus PHC's global keypoint term: sum of w * exp(-k * error))
    w_pose: float = 0.5
    """Weight of the joint-angle (and root orientation) term."""
    k_pose: float = 2.0
    """Scale of the summed squared joint-angle error, 1/rad^2."""
    w_vel: float = 0.1
    """Weight of the joint-velocity term."""
    k_vel: float = 0.1
    """Scale of the summed squared joint-velocity error, s^2/rad^2."""
    w_end_effector: float = 0.15
    """Weight of the end-effector term (hands, feet, head relative to the root)."""
    k_end_effector: float = 40.0
    """Scale of the summed squared end-effector error, 1/m^2."""
    w_root: float = 0.1
    """Weight of the root (centre-of-mass proxy) position term."""
    k_root: float = 10.0
    """Scale of the squared root position error, 1/m^2."""
    w_keypoint: float = 0.15
    """Weight of the global keypoint term (PHC, Luo et al. 2023): the only term that sees
    world-frame drift of the whole body, which the root-relative terms above forgive."""
    k_keypoint: float = 100.0
    """Scale of the mean (over keypoints) squared world-frame keypoint error, 1/m^2."""

    # --- termination
    fall_height: float = 0.5
    """The episode ends when the pelvis drops below this height, metres (``fall``); the one fall
    threshold: :func:`rlkd.envs.humanoid.metrics.fallen` and its fall rates default to it."""
    max_tracking_error: float = 0.5
    """... or when the mean keypoint error exceeds this, metres."""
    max_episode_steps: int = 300
    """Time limit in control steps (truncation; 9 s at the default rate)."""

    # --- sensing (sim-to-real params)
    obs_noise_std: float = 0.0
    """Gaussian noise on the ``proprio`` group but its ``prev_action`` part (the same values are
    ``policy``'s proprioceptive part; ``critic`` stays clean), param ``obs_noise_std``."""
    action_noise_std: float = 0.0
    """Gaussian noise on the actions before they become PD targets (param ``action_noise_std``)."""
