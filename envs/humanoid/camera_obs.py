"""The humanoid's camera observations (``vision="rays"|"keypoints2d"``): a mixin of
:class:`~rlkd.envs.humanoid.env.HumanoidMotionEnv` that owns the camera rig, its per-env params,
the ``keypoints`` group and the accessors ``camera()``, ``keypoints_2d()``, ``keypoint_rays()``.

What the camera films is the **reference performer** (the motion to imitate), not the simulated
body: the student must learn the motion from what a video shows of it. Every frame of
``keypoint_steps`` (control steps ahead: the video is known ahead) is projected with the camera
of that frame (``follow`` moves with the performer). The detector's noise and dropout are drawn
once per video frame, so a frame reads the same while it moves through the window (as a
detector run once over a video would).
"""

from __future__ import annotations

import torch

from rlkd.sim.rotations import unyaw

from .vision import PerformerCamera, detect, intrinsics, pixel_rays, project, segment_hits_boxes

#: Per-env camera params, drawn at every reset from the config range of the same name.
CAMERA_PARAMS = ("camera_distance", "camera_height", "camera_azimuth", "camera_fovy",
                 "keypoint_noise_px", "keypoint_dropout")


def keypoint_parts(mode: str, num_keypoints: int, steps) -> list[tuple[str, int]]:
    """``[(part, size), ...]`` of the ``keypoints`` group: per frame (prefix ``kp{k}_``, k the
    step offset) the detections (``rays`` P x 3, or ``uv`` P x 2 and ``intrinsics`` 4), then
    ``visible`` (P), ``camera_pos`` (3) and ``camera_rot6`` (6)."""
    steps = list(steps)
    tags = steps if len(set(steps)) == len(steps) else [f"{k}_{i}" for i, k in enumerate(steps)]
    P = num_keypoints
    det = [("rays", 3 * P)] if mode == "rays" else [("uv", 2 * P), ("intrinsics", 4)]
    return [(f"kp{k}_{name}", n) for k in tags
            for name, n in det + [("visible", P), ("camera_pos", 3), ("camera_rot6", 6)]]


class CameraObservations:
    """Mixin: the camera and detector of the humanoid env (see the module docstring)."""

    def _init_vision(self) -> None:
        c, N, dev = self.cfg, self.num_envs, self.device
        self._camera = None
        if c.vision == "none":
            return
        W, H = (int(v) for v in c.image_size[:2])
        self._camera = PerformerCamera(N, c.camera_mode, W, H, c.keypoint_occlusion, dev)
        # Env attributes too, so state_dict / load_state_dict (exact resume) carry the rigs.
        self._cam_anchor, self._cam_heading, self._cam_occ_draws = (
            self._camera.anchor, self._camera.heading, self._camera.occ_draws)
        for name in CAMERA_PARAMS:
            self.params[name] = torch.full((N,), float(getattr(c, name)[0]), device=dev)
        #: Multiplies ``keypoint_noise_px`` (sim-to-real suites scale it; 1 by default).
        self.params["keypoint_noise_scale"] = torch.ones(N, device=dev)
        P = len(self.skeleton.keypoint_names)
        z = lambda *s: torch.zeros(N, *s, device=dev)  # noqa: E731
        # The latest observation's frame-0 view (what the accessors return).
        self._kp_uv, self._kp_rays = z(P, 2), z(P, 3)
        self._kp_visible = torch.zeros(N, P, dtype=torch.bool, device=dev)
        self._cam_R, self._cam_c, self._cam_K = z(3, 3), z(3), z(3, 3)
        # The detector's draws per video frame, a ring over the L = max(keypoint_steps) + 1
        # frames in view: video frame t + k sits in slot (t + k) % L (t = the episode step),
        # so a frame keeps its noise and dropout while it moves through the window, and a
        # step draws one new frame.
        self._det_ring = z(max(c.keypoint_steps) + 1, P, 3)
        self._det_steps = torch.as_tensor(c.keypoint_steps, device=dev)

    def _draw_detections(self, env_ids: torch.Tensor | None, frames: int) -> torch.Tensor:
        """``(M, frames, P, 3)`` detector draws: two standard normals (pixel noise) and a
        uniform (dropout) per keypoint and video frame."""
        P = self._kp_uv.shape[1]
        M = self.num_envs if env_ids is None else len(env_ids)
        return torch.cat((self.rng.normal(env_ids, frames * P * 2).view(M, frames, P, 2),
                          self.rng.uniform(env_ids, frames * P).view(M, frames, P, 1)), -1)

    def _vision_reset(self, env_ids: torch.Tensor, pelvis: torch.Tensor,
                      heading: torch.Tensor) -> None:
        """Draw the camera params of ``env_ids`` from their ranges and place the rigs around the
        performer's ``pelvis (M, 3)`` facing ``heading (M,)`` rad (the reference at reset)."""
        if self._camera is None:
            return
        c = self.cfg
        B = c.keypoint_occlusion
        u = self.rng.uniform(env_ids, len(CAMERA_PARAMS) + 6 * B)
        for i, name in enumerate(CAMERA_PARAMS):
            lo, hi = (float(v) for v in getattr(c, name))
            self.params[name][env_ids] = lo + (hi - lo) * u[:, i]
        self._camera.place(env_ids, pelvis, heading,
                           u[:, len(CAMERA_PARAMS):].reshape(len(env_ids), B, 6))
        self._det_ring[env_ids] = self._draw_detections(env_ids, self._det_ring.shape[1])

    def _keypoint_features(self, env_ids: torch.Tensor | None, root_pos: torch.Tensor,
                           yaw: torch.Tensor, ref_keypoints: torch.Tensor) -> torch.Tensor:
        """The ``keypoints`` group ``(M, D)`` for the reference's keypoints at the
        ``keypoint_steps`` frames ``ref_keypoints (M, F, P, 3)`` (world), in the heading frame of
        the simulated pelvis (``root_pos (M, 3)``, ``yaw (M,)``); also stores frame 0's view."""
        cam = self._camera
        sel = (lambda t: t) if env_ids is None else (lambda t: t[env_ids])  # noqa: E731
        M, F, P = ref_keypoints.shape[:3]
        W, H = cam.width, cam.height
        centre, R, target, az = cam.pose(env_ids, ref_keypoints[:, :, 0], self.params)
        K = intrinsics(sel(self.params["camera_fovy"]), W, H)[:, None].expand(M, F, 3, 3)
        occluded = None
        if cam.num_occluders:
            lo, hi = cam.occluders(env_ids, centre, target, az)
            occluded = segment_hits_boxes(centre, ref_keypoints, lo, hi)
        L = self._det_ring.shape[1]
        t = self.episode_length_buf if env_ids is None else self.episode_length_buf[env_ids]
        if env_ids is None:  # once per step (and at reset()): the frame entering the window
            newest = (t + L - 1) % L
            self._det_ring[self._all_ids, newest] = self._draw_detections(None, 1)[:, 0]
        slots = (t[:, None] + self._det_steps) % L                                # (M, F)
        rows = self._all_ids if env_ids is None else env_ids
        draws = self._det_ring[rows[:, None], slots]                               # (M, F, P, 3)
        noise, drop = draws[..., :2], draws[..., 2]
        std = sel(self.params["keypoint_noise_px"]) * sel(self.params["keypoint_noise_scale"])
        uv, visible = detect(ref_keypoints, R, centre, K, W, H, std,
                             sel(self.params["keypoint_dropout"]), noise, drop, occluded)
        rays = pixel_rays(uv, R, K) * visible[..., None]
        self._kp_uv[rows], self._kp_visible[rows], self._kp_rays[rows] = \
            uv[:, 0], visible[:, 0], rays[:, 0]
        self._cam_R[rows], self._cam_c[rows], self._cam_K[rows] = R[:, 0], centre[:, 0], K[:, 0]

        cy, sy = torch.cos(yaw)[:, None, None], torch.sin(yaw)[:, None, None]
        cam_pos = unyaw(centre - root_pos[:, None], cy[..., 0], sy[..., 0])        # (M, F, 3)
        cols = unyaw(R.transpose(-1, -2)[..., :2, :], cy, sy)                    # (M, F, 2, 3)
        vis = visible.float()
        if self.cfg.vision == "rays":
            det = [unyaw(rays, cy, sy).reshape(M, F, -1)]
        else:  # pixels scaled to [-1, 1] by the image size, then fx/W, fy/H, cx/W, cy/H
            scale = torch.tensor([W / 2, H / 2], device=uv.device)
            det = [((uv - scale) / scale * vis[..., None]).reshape(M, F, -1),
                   torch.stack((K[..., 0, 0] / W, K[..., 1, 1] / H, K[..., 0, 2] / W,
                                K[..., 1, 2] / H), -1)]
        return torch.cat(det + [vis, cam_pos, cols.reshape(M, F, 6)], -1).reshape(M, -1)

    def _body_pixels(self, keypoints: torch.Tensor) -> torch.Tensor:
        """``(N, P, 2)`` the simulated body's ``keypoints (N, P, 3)`` projected by the latest
        frame-0 camera, px; once per step (the 2D reward and the metric share it)."""
        if "body_uv" not in self._cache:
            self._cache["body_uv"] = project(keypoints, self._cam_R, self._cam_c, self._cam_K)[0]
        return self._cache["body_uv"]

    def _reprojection_error(self, keypoints: torch.Tensor) -> torch.Tensor:
        """``(N,)`` mean pixel distance between the simulated body's ``keypoints (N, P, 3)``
        projected by the latest frame-0 camera and the detections it saw of the performer,
        over the seen keypoints (0 where none was seen), px."""
        uv = self._body_pixels(keypoints)
        vis = self._kp_visible.float()
        err = (uv - self._kp_uv).norm(dim=-1) * vis
        return err.sum(-1) / vis.sum(-1).clamp_min(1)

    def _reward_2d_terms(self, keypoints: torch.Tensor, sole: torch.Tensor
                         ) -> dict[str, torch.Tensor]:
        """The ``reward="2d"`` terms ``(N,)`` each (see the config's ``reward``) for the simulated
        body's ``keypoints (N, P, 3)`` and soles ``(N, 2, 3)`` (centre x, y; lowest height)."""
        from .metrics import FOOT_CONTACT_HEIGHT, MM, step_foot_sliding

        c = self.cfg
        uv = self._body_pixels(keypoints)
        vis = self._kp_visible.float()
        n_seen = vis.sum(-1)
        e = ((uv - self._kp_uv).square().sum(-1) * vis).sum(-1) / (
            n_seen.clamp_min(1) * self._cam_K[:, 0, 0].square())
        align = c.w_reprojection * torch.exp(-c.k_reprojection * e) * (n_seen > 0)
        slide = step_foot_sliding(sole, self._hist_sole, FOOT_CONTACT_HEIGHT) / MM
        return {"reprojection": align, "action_rate": -c.w_action_rate * self._action_rate,
                "foot_sliding": -c.w_foot_sliding * slide,
                "penetration": -c.w_penetration * (-sole[..., 2]).clamp_min(0).sum(-1)}

    # ------------------------------------------------------------------ accessors
    def _require_camera(self) -> None:
        if self._camera is None:
            raise ValueError("this env has no camera: make it with vision='rays' or "
                             "vision='keypoints2d'")

    def camera(self, env_ids: torch.Tensor | None = None) -> dict:
        """The latest observation's camera (frame 0): ``K (M, 3, 3)`` intrinsics (px), ``R
        (M, 3, 3)`` camera-to-world rotation (OpenCV axes: x right, y down, z forward),
        ``c (M, 3)`` centre (world, metres), ``width``, ``height`` (px)."""
        self._require_camera()
        sel = (lambda t: t) if env_ids is None else (lambda t: t[env_ids])  # noqa: E731
        return {"K": sel(self._cam_K).clone(), "R": sel(self._cam_R).clone(),
                "c": sel(self._cam_c).clone(), "width": self._camera.width,
                "height": self._camera.height}

    def keypoints_2d(self, env_ids: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(uv (M, P, 2) px, visible (M, P) bool)``: the detections of the latest
        observation's frame 0 (zeros where unseen), keypoints in
        :attr:`Skeleton.keypoint_names` order."""
        self._require_camera()
        sel = (lambda t: t) if env_ids is None else (lambda t: t[env_ids])  # noqa: E731
        return sel(self._kp_uv).clone(), sel(self._kp_visible).clone()

    def keypoint_rays(self, env_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``(M, P, 3)`` unit world-frame rays from the camera centre through each detection of
        the latest observation's frame 0 (zeros where unseen)."""
        self._require_camera()
        return (self._kp_rays if env_ids is None else self._kp_rays[env_ids]).clone()
