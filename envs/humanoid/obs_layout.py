"""The humanoid's observation groups as named parts: one description that sizes the spaces and
names ``env.observation_layout`` (see the table in :mod:`rlkd.envs.humanoid.env`)."""

from __future__ import annotations

from .camera_obs import keypoint_parts


def observation_parts(nd: int, n_ee: int, future_steps, vision: str = "none",
                       num_keypoints: int = 0, keypoint_steps=()) -> dict[str, list[tuple[str, int]]]:
    """``{group: [(part, size), ...]}`` in feature order, for ``nd`` joints, ``n_ee`` end-effector
    coordinates (3 per site) and the ``future_steps`` offsets: the one description of the
    observation that sizes the spaces and names the layout. Future frames are named by their
    step offset (``ref3_*`` = 3 control steps ahead), or by their index if offsets repeat."""
    proprio = [("pelvis_height", 1), ("pelvis_rot6", 6), ("pelvis_lin_vel", 3),
               ("pelvis_ang_vel", 3), ("joint_pos", nd), ("joint_vel", nd),
               ("end_effectors", n_ee), ("prev_action", nd)]
    steps = list(future_steps)
    tags = steps if len(set(steps)) == len(steps) else [f"{k}_{i}" for i, k in enumerate(steps)]
    reference = [(f"ref{k}_{part}", n) for k in tags
                 for part, n in (("pelvis_pos", 3), ("pelvis_rot6", 6), ("joint_pos", nd),
                                 ("end_effectors", n_ee))]
    critic = proprio + reference + [("err_joint_pos", nd), ("err_joint_vel", nd),
                                    ("err_end_effectors", n_ee), ("err_pelvis_pos", 3),
                                    ("foot_forces", 6), ("phase", 2)]
    parts = {"policy": proprio + reference, "proprio": proprio, "reference": reference,
             "critic": critic, "teacher": proprio + reference}
    if vision != "none":
        keypoints = keypoint_parts(vision, num_keypoints, keypoint_steps)
        parts.update(keypoints=keypoints, student=proprio + keypoints)
    return parts
