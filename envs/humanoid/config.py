"""Configuration of the humanoid motion-tracking task (``HumanoidMotion-v0``)."""

from __future__ import annotations

from dataclasses import dataclass

from rlkd.core.config import (flag, integer, integers, knob, number, one_of, require, span, text,
                              validate_fields)

#: Shorthand rule: a finite number >= 0 (reward weights and scales, noise levels, heights).
NONNEG = number(lo=0)


@dataclass
class HumanoidMotionConfig:
    """Every knob of ``HumanoidMotion-v0``; override any field by keyword in ``rlkd.make``."""

    # --- reference motion
    motion: str = knob("walk", text("a motion spec: clips, 'a+b', 'x*2', '@set'"))
    """Clips to track, comma-separated: procedural kinds (``walk``, ``turn``, ``jog_in_place``,
    ``squat``, ``wave``; ``walk@1.0``, ``turn@0.8:-0.5`` set speed m/s and yaw rate rad/s),
    paths to ``.npz`` / ``.bvh`` files (BVH is retargeted), ``a+b`` concatenations (blended),
    ``x*2`` weights, ``@general`` / ``@file.yaml`` motion sets
    (:mod:`rlkd.envs.humanoid.motions.spec` has the syntax)."""
    motion_mode: str = knob("wrap", one_of("wrap", "clamp"))
    """``"wrap"``: clips loop (the root carries on); ``"clamp"``: hold the last frame. The mode
    of clips whose motion-set entry names none."""
    init_phase: str = knob("random", one_of("random", "start"))
    """Where a reset starts in its clip: ``"random"`` (reference-state initialization at a random
    phase) or ``"start"`` (the clip's first frame: evaluation of whole clips)."""

    # --- reset sampling: PHC hard-negative mining (rlkd.envs.humanoid.sampling)
    hard_negative: bool = knob(False, flag())
    """Draw reset clips and phases in proportion to ``weight x (eps + failure rate)^alpha``
    (per clip, then per phase bin) instead of by weight alone; the failure statistics are kept
    (``env.clip_stats()``) either way."""
    hard_negative_bins: int = knob(8, integer(lo=1, hi=256))
    """Phase bins per clip of the failure statistics."""
    hard_negative_alpha: float = knob(1.0, NONNEG)
    """Exponent ``alpha`` on ``eps + failure rate`` (0: weights alone)."""
    hard_negative_eps: float = knob(0.1, number(lo=0, lo_open=True))
    """Floor ``eps`` added to the failure rates: a clip that never fails keeps
    ``(eps / (eps + 1))^alpha`` of the draws of one that always fails."""
    hard_negative_rate: float = knob(0.1, number(lo=0, hi=1, lo_open=True))
    """EMA rate per finished episode of the failure statistics of its start bin."""

    # --- fail-state recovery: PHC's perpetual control (rlkd.envs.humanoid.recovery)
    recovery_fraction: float = knob(0.0, number(lo=0, hi=1))
    """Share of resets that start fallen or away from the reference (0: none)."""
    recovery_fallen: float = knob(0.5, number(lo=0, hi=1))
    """Share of those that start fallen (lying on the back, front or a side); the others start
    upright but offset."""
    recovery_offset: tuple[float, float] = knob((0.5, 2.0), span(lo=0, hi=20))
    """Horizontal offset of an offset start from the reference pelvis, metres (drawn per reset)."""
    recovery_yaw: float = knob(3.14159, number(lo=0, hi=3.14159))
    """Largest heading offset of an offset start, rad (drawn uniformly in +-this)."""
    recovery_grace: float = knob(5.0, NONNEG)
    """Seconds during which a recovery episode ends neither on a fall nor on tracking error
    (until it has recovered): PHC relaxes termination while getting back."""
    recovery_tolerance: float = knob(0.2, number(lo=0, lo_open=True))
    """A recovery episode has ``recovered`` when its mean keypoint error drops below this, m,
    with the pelvis above ``fall_height``."""
    w_recovery: float = knob(0.2, NONNEG)
    """Weight of the reward term ``w exp(-k d)`` on the pelvis distance d to the reference (m),
    present only with ``recovery_fraction`` > 0: its wide basin leads back from metres away,
    where the tracking terms are flat."""
    k_recovery: float = knob(1.0, NONNEG)
    """Scale of that distance, 1/m."""
    recovery_residual_scale: float = knob(0.0, NONNEG)
    """Residual actions only: the widest residual range, rad, given to a humanoid whose pelvis
    is far below the reference's (getting up needs joint targets far from a standing or walking
    frame). 0 (or at most ``residual_scale``): off. The range grows linearly from
    ``residual_scale`` at ``RECOVERY_DROP[0]`` metres below the reference pelvis to this at
    ``RECOVERY_DROP[1]`` (:mod:`rlkd.envs.humanoid.recovery`): a function of the state the policy
    observes, the same in every episode, not only in recovery starts."""
    future_steps: tuple[int, ...] = knob((1, 3, 6), integers(lo=1))
    """Reference frames in the observation, as control steps ahead of the current time."""
    motion_range_tolerance: float = knob(0.5, number(lo=0, allow_inf=True))
    """Clips whose joint angles leave a joint's range (the MJCF's) by more than this, rad, are
    refused at load (:class:`~rlkd.envs.humanoid.motions.MotionError` naming the file, joint and
    frame); ``inf`` turns the check off."""

    # --- simulation
    backend: str = knob("cpu", one_of("cpu", "warp"))
    """``"cpu"`` (native MuJoCo on a thread pool) or ``"warp"`` (MuJoCo Warp)."""
    num_threads: int = knob(0, integer(lo=0, note="0: every core"))
    """CPU backend threads (0 = the cores this process may use)."""
    frame_skip: int = knob(6, integer(lo=1))
    """Physics steps (5 ms each) per control step: 6 gives 33.3 Hz control."""

    # --- action
    action_mode: str = knob("absolute", one_of("absolute", "residual"))
    """``"absolute"``: actions map linearly onto each joint's range (the PD target itself; what
    a student without access to the reference must produce). ``"residual"``: PD target = the
    next reference frame's angle + ``residual_scale x action`` (the env injects the reference:
    for experts, which see it anyway; much faster to train)."""
    residual_scale: float = knob(0.5, NONNEG)
    """Largest residual around the reference in ``residual`` mode, rad."""
    teacher_action_mode: str = knob("residual", one_of("absolute", "residual"))
    """Action mode of the expert that reads the ``teacher`` group: its ``prev_action`` part is
    the last action re-expressed in this mode (a residual expert fed its absolute previous
    action doubles its error, 32 -> 66 mm), whatever ``action_mode`` this env runs in."""

    # --- reward (DeepMimic terms plus PHC's global keypoint term: sum of w * exp(-k * error))
    w_pose: float = knob(0.5, NONNEG)
    """Weight of the joint-angle (and root orientation) term."""
    k_pose: float = knob(2.0, NONNEG)
    """Scale of the summed squared joint-angle error, 1/rad^2."""
    w_vel: float = knob(0.1, NONNEG)
    """Weight of the joint-velocity term."""
    k_vel: float = knob(0.1, NONNEG)
    """Scale of the summed squared joint-velocity error, s^2/rad^2."""
    w_end_effector: float = knob(0.15, NONNEG)
    """Weight of the end-effector term (hands, feet, head relative to the root)."""
    k_end_effector: float = knob(40.0, NONNEG)
    """Scale of the summed squared end-effector error, 1/m^2."""
    w_root: float = knob(0.1, NONNEG)
    """Weight of the root (centre-of-mass proxy) position term."""
    k_root: float = knob(10.0, NONNEG)
    """Scale of the squared root position error, 1/m^2."""
    w_keypoint: float = knob(0.15, NONNEG)
    """Weight of the global keypoint term (PHC, Luo et al. 2023): the only term that sees
    world-frame drift of the whole body, which the root-relative terms above forgive."""
    k_keypoint: float = knob(100.0, NONNEG)
    """Scale of the mean (over keypoints) squared world-frame keypoint error, 1/m^2."""

    # --- the 2D reward (PhysHMR's fine-tuning: what the video shows, plus realism terms)
    reward: str = knob("3d", one_of("3d", "2d"))
    """``"3d"``: the tracking terms above (they read the reference's 3D pose). ``"2d"``: ``w_reprojection
    exp(-k_reprojection e_2d)`` with ``e_2d`` the mean over seen keypoints of the squared pixel
    distance between the simulated body (projected by the camera) and the detections, over the
    focal length squared (rad^2), minus ``w_action_rate`` x mean squared action change, minus
    ``w_foot_sliding`` x foot sliding (m/frame), minus ``w_penetration`` x summed depth of the
    soles' lowest corners below the floor (m). Needs a camera (``vision`` != ``"none"``)."""
    w_reprojection: float = knob(1.0, NONNEG)
    """Weight of the 2D alignment term (``reward="2d"``)."""
    k_reprojection: float = knob(1000.0, NONNEG)
    """Scale of the mean squared angular reprojection error, 1/rad^2 (a 50 mm error seen from
    3 m gives exp(-0.28) = 0.76)."""
    w_action_rate: float = knob(1.0, NONNEG)
    """Penalty per unit mean squared change of the action between steps (``reward="2d"``)."""
    w_foot_sliding: float = knob(20.0, NONNEG)
    """Penalty per metre per frame of foot sliding (``reward="2d"``)."""
    w_penetration: float = knob(10.0, NONNEG)
    """Penalty per metre of sole depth below the floor (``reward="2d"``)."""

    # --- termination
    fall_height: float = knob(0.5, NONNEG)
    """The episode ends when the pelvis drops below this height, metres (``fall``); the one fall
    threshold: :func:`rlkd.envs.humanoid.metrics.fallen` and its fall rates default to it."""
    max_tracking_error: float = knob(0.5, number(lo=0, lo_open=True, allow_inf=True))
    """... or when the mean keypoint error exceeds this, metres (``inf``: never)."""
    max_episode_steps: int = knob(300, integer(lo=1))
    """Time limit in control steps (truncation; 9 s at the default rate)."""

    # --- sensing (sim-to-real params)
    obs_noise_std: float = knob(0.0, NONNEG)
    """Gaussian noise on the ``proprio`` group but its ``prev_action`` part (the same values are
    ``policy``'s proprioceptive part; ``critic`` stays clean), param ``obs_noise_std``."""
    action_noise_std: float = knob(0.0, NONNEG)
    """Gaussian noise on the actions before they become PD targets (param ``action_noise_std``)."""

    # --- vision: a camera films the reference performer (the video to imitate)
    vision: str = knob("none", one_of("none", "rays", "keypoints2d"))
    """``"none"``: no camera (today's groups and speed). ``"rays"``: groups ``keypoints`` and
    ``student`` carry each detected keypoint as a pixel-aligned ray (PhysHMR); ``"keypoints2d"``:
    as pixels with the intrinsics instead."""
    keypoint_steps: tuple[int, ...] = knob((0, 1, 3, 6), integers(lo=0))
    """Video frames in the ``keypoints`` group, as control steps ahead of now (the video is
    known ahead, as in PhysHMR)."""
    camera_mode: str = knob("follow", one_of("follow", "fixed"))
    """``"follow"``: the camera keeps its offset from the performer's pelvis (a dolly; its
    world azimuth stays put); ``"fixed"``: placed at reset, then still (the performer may leave
    the image)."""
    camera_distance: tuple[float, float] = knob((3.0, 5.0), span(lo=0.5, hi=100))
    """Horizontal distance from the camera to the performer's pelvis at reset, metres; drawn
    per env at reset from this range (param ``camera_distance``)."""
    camera_height: tuple[float, float] = knob((1.0, 2.0), span(lo=0.05, hi=100))
    """Camera height above the floor, metres (param ``camera_height``)."""
    camera_azimuth: tuple[float, float] = knob((-60.0, 60.0), span(lo=-360, hi=360))
    """Camera direction around the performer, degrees, relative to the performer's heading at
    reset (0: in front, filming its face; 180: behind) (param ``camera_azimuth``)."""
    camera_fovy: tuple[float, float] = knob((45.0, 60.0), span(lo=5, hi=170))
    """Vertical field of view, degrees (param ``camera_fovy``); square pixels."""
    image_size: tuple[int, ...] = knob((640, 480), integers(lo=16, min_len=2))
    """Image width, height in pixels that the detections live in."""
    keypoint_noise_px: tuple[float, float] = knob((1.0, 3.0), span(lo=0, hi=1000))
    """Detector noise: Gaussian pixel noise std on every detected keypoint, px (param
    ``keypoint_noise_px``, times param ``keypoint_noise_scale``, 1 unless a suite sets it)."""
    keypoint_dropout: tuple[float, float] = knob((0.0, 0.05), span(lo=0, hi=1))
    """Probability that a visible keypoint goes undetected, per keypoint and frame (param
    ``keypoint_dropout``)."""
    keypoint_occlusion: int = knob(0, integer(lo=0, hi=16))
    """Occluder boxes per env between the camera and the performer (placed at reset, moving
    with the camera rig): keypoints behind them are unseen. The body does not occlude itself."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "HumanoidMotionConfig":
        """Check every field's rule (the ``knob`` next to it); raises
        :class:`rlkd.core.config.ConfigError` (a ``ValueError``) naming the field, its value and
        the allowed range. Returns ``self``."""
        validate_fields(self)
        require(self, self.reward == "3d" or self.vision != "none", "reward",
                "'3d' unless vision is 'rays' or 'keypoints2d' (the 2d reward compares the body "
                "with the camera's detections)")
        return self
