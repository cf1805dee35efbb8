"""Configuration of the tactile peg tasks (``TactilePegInsertion-v0``,
``TactilePegPlacement-v0``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlkd.core.config import flag, integer, knob, number, one_of, require, validate_fields

#: Shorthand rule: a finite number >= 0 (weights, noise levels, ranges).
NONNEG = number(lo=0)
POSITIVE = number(lo=0, lo_open=True)


@dataclass
class TactilePegConfig:
    """Every knob of the tactile peg tasks; override any field by keyword in ``rlkd.make``."""

    # --- task and scene
    task: str = knob("insertion", one_of("insertion", "placement"))
    """``"insertion"``: seat the held peg in the socket; ``"placement"``: stand it upright on a
    floor marker and let go (:mod:`rlkd.envs.tactile.placement`; either id builds the task this
    names)."""
    clearance: float = knob(0.0002, number(lo=0.0001, hi=0.001))
    """Diametral clearance of the socket's hole, m (0.1-1 mm; TacSL's pegs: ~0.2-0.5 mm)."""
    socket_depth: float = knob(0.02, number(lo=0.005, hi=0.03))
    """Hole depth, m."""
    success_depth: float = knob(0.9, number(lo=0, hi=1, lo_open=True))
    """Success when the peg's bottom is this fraction of ``socket_depth`` below the hole's rim."""

    # --- simulation
    backend: str = knob("cpu", one_of("cpu", "warp"))
    """``"cpu"`` (native MuJoCo) or ``"warp"`` (MuJoCo Warp)."""
    num_threads: int = knob(0, integer(lo=0, note="0: every core"))
    """CPU backend threads (0 = the cores this process may use)."""
    frame_skip: int = knob(10, integer(lo=1))
    """Physics steps (2 ms each) per control step: 10 gives 50 Hz control."""

    # --- action (TacSL's scales)
    action_pos_scale: float = knob(0.01, POSITIVE)
    """Largest wrist translation per step, m (the target is the current pose plus it)."""
    action_rot_scale: float = knob(0.05, POSITIVE)
    """Largest wrist rotation per step about each wrist hinge, rad."""
    grip_force: float = knob(10.0, number(lo=0, hi=60))
    """Finger motor force, N (param ``grip_force``, per env)."""

    # --- per-reset randomization
    in_hand_angle: float = knob(math.radians(20.0), number(lo=0, hi=math.radians(45.0)))
    """Peg turned in the hand about the pad normal by U(-a, a), rad (TacSL: 0.628)."""
    in_hand_shift: float = knob(0.003, number(lo=0, hi=0.005))
    """Peg shifted in the pad plane (along the hand's x and z) by U(-s, s) each, m."""
    socket_range: float = knob(0.005, number(lo=0, hi=0.02))
    """Socket placed at U(-r, r) in x and y relative to the robot's nominal start, m."""
    socket_noise_std: float = knob(0.001, NONNEG)
    """Std of the (per-episode) error of the observed socket position, m (param)."""
    start_height_min: float = knob(0.003, NONNEG)
    """The peg's lowest point starts at least this high above the hole's rim, m ..."""
    start_height_max: float = knob(0.010, NONNEG)
    """... and at most this high (uniform in between), m."""

    # --- tactile sensing
    tactile_obs: str = knob("field", one_of("field", "image", "both", "none"))
    """Tactile groups: ``"field"``: ``obs["tactile"]`` ``(N, 2, 3, R, C)`` float32 force field;
    ``"image"``: ``obs["tactile_image"]`` ``(N, 2, 3, H, W)`` uint8 RGB images (see
    :mod:`rlkd.envs.tactile.image`); ``"both"``: both groups; ``"none"``: no tactile group."""
    tactile_mode: str = knob("contact", one_of("contact", "penalty"))
    """Force-field model (see :mod:`rlkd.envs.tactile.sensor`)."""
    tactile_rows: int = knob(20, integer(lo=1, hi=200))
    """Taxel rows per pad (along the finger)."""
    tactile_cols: int = knob(25, integer(lo=1, hi=200))
    """Taxel columns per pad (across the finger)."""
    tactile_kn: float = knob(1.0, NONNEG)
    """``penalty`` mode normal stiffness, N/m per taxel (TacSL: 1)."""
    tactile_kt: float = knob(0.1, NONNEG)
    """``penalty`` mode tangential damping, N s/m per taxel (TacSL: 0.1)."""
    tactile_mu: float = knob(2.0, NONNEG)
    """``penalty`` mode friction cap of the shear (TacSL: 2)."""
    gel_stiffness: float = knob(1.0, POSITIVE)
    """Pad (gel) contact stiffness as a multiple of the nominal pad's, 1 = nominal (param,
    per env): the two pads' ``solref`` time constant becomes ``nominal / sqrt(g)`` (stiffness
    ``~ 1 / timeconst^2``, see the env's manual); MuJoCo's 2-step floor on the time constant
    caps the effect at ``(0.01 / 0.004)^2 = 6.25`` with the default pads and 2 ms step."""
    tactile_noise_std: float = knob(0.0, NONNEG)
    """Gaussian noise added to every field value, the field's units (param)."""
    tactile_dropout: float = knob(0.0, number(lo=0, hi=1))
    """Probability that a taxel reads zero on all channels, per step (param)."""
    tactile_image_height: int = knob(80, integer(lo=1, hi=512))
    """Tactile image rows per pad ``H`` (along the finger; TacSL: 80; a CPU study may use 40)."""
    tactile_image_width: int = knob(60, integer(lo=1, hi=512))
    """Tactile image columns per pad ``W`` (across the finger; TacSL: 60; CPU: 30)."""
    tactile_image_blur: float = knob(1.0, number(lo=0, hi=20))
    """Gaussian blur of the gel's height map (elastomer spread), sigma in pixels (0 = none)."""
    tactile_image_max_depth: float = knob(0.0015, number(lo=0, hi=0.01, lo_open=True))
    """Gel depth, m: penetration beyond it reads as it (the height map is clipped there)."""
    tactile_image_noise: float = knob(0.0, NONNEG)
    """Gaussian noise added to every image pixel and channel, intensity units 0-255 (param)."""
    tactile_image_compile: bool = knob(False, flag())
    """Run the image's depth and shading through ``torch.compile`` (~2x faster on one CPU
    thread, 10-30 s to compile at the first observation); eager when False, the default."""

    # --- reward (TacSL / IndustReal: squashed keypoint distance, success bonus, action rate)
    num_keypoints: int = knob(4, integer(lo=2, hi=16))
    """Keypoints evenly spaced along the peg axis, bottom to top."""
    w_keypoint: float = knob(1.0, NONNEG)
    """Weight of ``1 / (exp(a d) + b + exp(-a d))`` of the mean keypoint distance d (m)."""
    keypoint_a: float = knob(50.0, POSITIVE)
    """Squashing scale ``a``, 1/m."""
    keypoint_b: float = knob(2.0, NONNEG)
    """Squashing offset ``b``."""
    w_keypoint_fine: float = knob(1.0, NONNEG)
    """Weight of a second, fine squashed term ``1 / (exp(a_f d) + exp(-a_f d))`` (Factory /
    Isaac Lab's ``keypoint_coef_fine`` [100, 0]): it peaks at 0.5 when seated and keeps a
    gradient in the last millimetres, where the coarse term is flat. 0: the coarse term alone."""
    keypoint_fine_a: float = knob(100.0, POSITIVE)
    """Fine term's scale ``a_f``, 1/m."""
    w_success: float = knob(100.0, NONNEG)
    """Bonus on the step the peg is seated (the episode ends there). It must beat staying put
    near the goal: the keypoint terms pay up to ``w_keypoint / (2 + b) + w_keypoint_fine / 2``
    (0.75) per step, worth 75 at gamma 0.99, so a 10 bonus taught PPO to hover half inserted
    (measured: success fell from 21% to 2% while the return rose); 100 > 75."""
    w_action_rate: float = knob(0.01, NONNEG)
    """Penalty weight of ``||a_t - a_{t-1}||^2``."""

    # --- termination
    max_force: float = knob(50.0, POSITIVE)
    """Fail (``over_force``) when the environment's contact force on the peg exceeds it, N."""
    drop_distance: float = knob(0.015, POSITIVE)
    """Fail (``dropped``) when the peg's centre leaves its grasp point by more than this, m."""
    max_episode_steps: int = knob(150, integer(lo=1))
    """Time limit in control steps (3 s at the default rate)."""

    # --- placement (task="placement"; TactilePegPlacement-v0): the knobs above apply too, with
    # the socket's rim read as the floor marker (no walls; socket_range / socket_noise_std place
    # and blur the marker; start_height_* are insertion's, place_height_* replace them)
    place_tol: float = knob(0.003, POSITIVE)
    """Success: the peg's bottom centre within this of the marker (horizontal distance), m ..."""
    upright_tol: float = knob(math.radians(5.0), number(lo=0, hi=math.radians(45.0), lo_open=True))
    """... its axis within this of vertical, rad ..."""
    hold_time: float = knob(0.5, number(lo=0, hi=10, lo_open=True))
    """... released, standing on the floor, for this long without a break, s (rounded to
    control steps, at least one: 25 at 50 Hz)."""
    place_height_min: float = knob(0.010, NONNEG)
    """The peg's lowest point starts at least this high above the floor, m ..."""
    place_height_max: float = knob(0.030, number(lo=0, hi=0.1))
    """... and at most this high (uniform in between), m."""
    open_force: float = knob(5.0, number(lo=0, hi=60, lo_open=True))
    """Finger motor force pulling the fingers apart while the gripper command is <= 0, N."""
    drop_height: float = knob(0.005, POSITIVE)
    """Fail (``dropped``) when the peg is let go with its lowest point above this, m ..."""
    drop_radius: float = knob(0.02, POSITIVE)
    """... or, once out of the hand, its bottom centre lies farther than this from the marker,
    m ..."""
    fall_tilt: float = knob(math.radians(30.0), number(lo=0, hi=math.radians(90.0), lo_open=True))
    """... or, once out of the hand, its axis is tilted by more than this, rad."""
    w_release: float = knob(2.5, NONNEG)
    """Hold-progress reward: ``+w_release / hold_steps`` on each step the success hold counter
    grows, ``-w_release k / hold_steps`` when a count of ``k`` is lost (see the task's manual)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "TactilePegConfig":
        """Check every field's rule; raises :class:`rlkd.core.config.ConfigError` (a
        ``ValueError``) naming the field, its value and the allowed range. Returns ``self``."""
        validate_fields(self)
        require(self, self.start_height_max >= self.start_height_min, "start_height_max",
                f">= start_height_min ({self.start_height_min})")
        require(self, self.place_height_max >= self.place_height_min, "place_height_max",
                f">= place_height_min ({self.place_height_min})")
        return self
