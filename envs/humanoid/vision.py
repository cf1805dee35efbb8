"""A camera filming the reference performer, and what a 2D keypoint detector reports of it.

Batched torch, no per-env loops. Conventions (OpenCV): camera axes x right, y down, z forward
(the optical axis); ``R`` is camera-to-world (its columns are the camera axes in the world
frame), ``c`` the camera centre in the world frame (metres), ``K`` the pinhole intrinsics with
square pixels and the principal point at the image centre. A world point ``p`` lands on pixel
``(u, v)`` with ``[u, v, 1] ~ K R^T (p - c)``; pixel ``(u, v)``'s ray is
``d = normalize(R K^-1 [u, v, 1])`` (PhysHMR's pixel-aligned ray).

The camera rig (:class:`PerformerCamera`) is drawn per env at reset from the env's params:
horizontal distance to the performer's pelvis, height above the floor, azimuth relative to the
performer's heading, vertical field of view. It looks at the pelvis. ``follow`` mode keeps the
rig's offset from the performer's pelvis (a dolly; the world azimuth stays put), ``fixed``
leaves it where it was placed. Occluder boxes ride with the rig. A keypoint is *seen* when it is
in front of the camera, inside the image, not behind an occluder and not dropped by the
detector; unseen keypoints read as zeros with visibility 0.
"""

from __future__ import annotations

import torch

#: Nearest depth a keypoint is seen at, metres (in front of the camera).
NEAR = 0.05


def look_at(centre: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Camera-to-world rotations ``(..., 3, 3)`` of cameras at ``centre (..., 3)`` looking at
    ``target (..., 3)`` with the image's up towards world +z (OpenCV axes as columns)."""
    z = torch.nn.functional.normalize(target - centre, dim=-1)
    up = torch.zeros_like(z)
    up[..., 2] = 1.0
    x = torch.linalg.cross(z, up)
    # Looking straight down/up leaves x undefined: take world +x then.
    degenerate = x.norm(dim=-1, keepdim=True) < 1e-6
    x = torch.where(degenerate, torch.tensor([1.0, 0.0, 0.0], device=z.device, dtype=z.dtype), x)
    x = torch.nn.functional.normalize(x, dim=-1)
    y = torch.linalg.cross(z, x)
    return torch.stack((x, y, z), -1)


def intrinsics(fovy_deg: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pinhole matrices ``(..., 3, 3)`` for vertical fields of view ``fovy_deg (...)`` degrees
    on a ``width x height`` image (square pixels, principal point at the centre)."""
    f = (height / 2) / torch.tan(torch.deg2rad(fovy_deg) / 2)
    K = torch.zeros(fovy_deg.shape + (3, 3), device=fovy_deg.device, dtype=fovy_deg.dtype)
    K[..., 0, 0] = f
    K[..., 1, 1] = f
    K[..., 0, 2] = width / 2
    K[..., 1, 2] = height / 2
    K[..., 2, 2] = 1.0
    return K


def project(points: torch.Tensor, R: torch.Tensor, c: torch.Tensor, K: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels ``(..., P, 2)`` and depths ``(..., P)`` (metres along the optical axis) of world
    points ``(..., P, 3)`` seen by cameras ``R (..., 3, 3)``, ``c (..., 3)``, ``K (..., 3, 3)``.
    Points behind the camera get garbage pixels: check the depth."""
    cam = torch.einsum("...ji,...pj->...pi", R, points - c.unsqueeze(-2))  # R^T (p - c)
    z = cam[..., 2]
    zs = torch.where(z.abs() < 1e-9, torch.full_like(z, 1e-9), z)
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    uv = torch.stack((fx * cam[..., 0] / zs + cx, fy * cam[..., 1] / zs + cy), -1)
    return uv, z


def pixel_rays(uv: torch.Tensor, R: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Unit world-frame rays ``(..., P, 3)`` through pixels ``uv (..., P, 2)``."""
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    d_cam = torch.stack(((uv[..., 0] - cx) / fx, (uv[..., 1] - cy) / fy,
                         torch.ones_like(uv[..., 0])), -1)
    return torch.nn.functional.normalize(torch.einsum("...ij,...pj->...pi", R, d_cam), dim=-1)


def segment_hits_boxes(start: torch.Tensor, end: torch.Tensor, box_lo: torch.Tensor,
                       box_hi: torch.Tensor) -> torch.Tensor:
    """Whether each segment ``start (..., 3) -> end (..., P, 3)`` passes through any of the
    axis-aligned boxes ``box_lo/box_hi (..., B, 3)`` (slab test) -> ``(..., P)`` bool."""
    if box_lo.shape[-2] == 0:
        return torch.zeros(end.shape[:-1], dtype=torch.bool, device=end.device)
    o = start[..., None, None, :]                              # (..., 1, 1, 3)
    d = (end - start.unsqueeze(-2))[..., :, None, :]           # (..., P, 1, 3)
    d = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    t1 = (box_lo.unsqueeze(-3) - o) / d                         # (..., P, B, 3)
    t2 = (box_hi.unsqueeze(-3) - o) / d
    t_in = torch.minimum(t1, t2).amax(-1)
    t_out = torch.maximum(t1, t2).amin(-1)
    hit = (t_out >= t_in) & (t_out >= 0) & (t_in <= 1)
    return hit.any(-1)


class PerformerCamera:
    """Per-env cameras filming the reference performer, and their occluders.

    Args:
        num_envs: batch size.
        mode: ``"follow"`` or ``"fixed"`` (see the module docstring).
        width, height: image size, pixels.
        num_occluders: boxes per env between the camera and the performer.
        device: torch device.

    State written by :meth:`place` at reset (per env): ``anchor (N, 3)`` the performer's pelvis
    then (world, metres), ``heading (N,)`` its heading then (rad), ``occ_draws (N, B, 6)`` the
    uniform draws that shape the occluders. The geometry itself is recomputed from the env's
    params at every :meth:`pose`, so writing ``camera_distance`` (etc.) of one env moves that
    env's camera at once.
    """

    def __init__(self, num_envs: int, mode: str, width: int, height: int, num_occluders: int,
                 device):
        self.mode, self.width, self.height = mode, int(width), int(height)
        self.anchor = torch.zeros(num_envs, 3, device=device)
        self.heading = torch.zeros(num_envs, device=device)
        self.occ_draws = torch.zeros(num_envs, num_occluders, 6, device=device)

    @property
    def num_occluders(self) -> int:
        return self.occ_draws.shape[1]

    def place(self, env_ids: torch.Tensor, pelvis: torch.Tensor, heading: torch.Tensor,
              occ_draws: torch.Tensor) -> None:
        """Place the rigs of ``env_ids`` around the performer's ``pelvis (M, 3)`` (world) facing
        ``heading (M,)`` rad; ``occ_draws (M, B, 6)`` uniform draws shape the occluders."""
        self.anchor[env_ids] = pelvis
        self.heading[env_ids] = heading
        self.occ_draws[env_ids] = occ_draws

    def pose(self, env_ids: torch.Tensor | None, pelvis: torch.Tensor,
             params: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For the performer's pelvis at ``F`` frames ``pelvis (M, F, 3)`` (world): camera centres
        ``(M, F, 3)``, rotations ``(M, F, 3, 3)``, look-at points ``(M, F, 3)`` and world
        azimuths ``(M,)`` rad (from params ``camera_distance``, ``camera_height`` and
        ``camera_azimuth``, degrees, relative to the heading at reset)."""
        sel = (lambda t: t) if env_ids is None else (lambda t: t[env_ids])  # noqa: E731
        az = sel(self.heading) + torch.deg2rad(sel(params["camera_azimuth"]))
        dist = sel(params["camera_distance"])
        target = pelvis if self.mode == "follow" else sel(self.anchor)[:, None].expand_as(pelvis)
        offset = torch.stack((dist * torch.cos(az), dist * torch.sin(az),
                              torch.zeros_like(dist)), -1)[:, None]
        centre = target + offset
        centre = torch.cat((centre[..., :2], sel(params["camera_height"])[:, None, None]
                            .expand_as(centre[..., 2:])), -1)
        return centre, look_at(centre, target), target, az

    def occluders(self, env_ids: torch.Tensor | None, centre: torch.Tensor,
                  target: torch.Tensor, az: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World ``(lo, hi)`` corners ``(M, F, B, 3)`` of the occluders of cameras at ``centre
        (M, F, 3)`` looking at ``target (M, F, 3)`` from world azimuth ``az (M,)``: boxes on the
        floor 30-70% of the way from the performer to the camera, up to 0.6 m to either side of
        the line of sight, 0.3-0.8 m wide and deep, 0.6-1.6 m tall."""
        u = self.occ_draws if env_ids is None else self.occ_draws[env_ids]       # (M, B, 6)
        frac = (0.3 + 0.4 * u[..., 0])[:, None, :, None]                          # (M, 1, B, 1)
        side = ((u[..., 1] - 0.5) * 1.2)[:, None, :, None]
        normal = torch.stack((-torch.sin(az), torch.cos(az)), -1)[:, None, None]  # (M, 1, 1, 2)
        line = (centre - target)[..., None, :2]                                   # (M, F, 1, 2)
        xy = target[..., None, :2] + frac * line + side * normal                  # (M, F, B, 2)
        half = torch.stack((0.15 + 0.25 * u[..., 2], 0.15 + 0.25 * u[..., 3],
                            0.3 + 0.5 * u[..., 4]), -1)[:, None].expand(xy.shape[:-1] + (3,))
        mid = torch.cat((xy, half[..., 2:]), -1)
        return mid - half, mid + half


def detect(points: torch.Tensor, R: torch.Tensor, c: torch.Tensor, K: torch.Tensor,
           width: int, height: int, noise_px: torch.Tensor, dropout: torch.Tensor,
           normal: torch.Tensor, uniform: torch.Tensor,
           occluded: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2D keypoint detector on ``points (M, F, P, 3)`` (world, metres).

    Args:
        R, c, K: cameras ``(M, F, 3, 3)``, ``(M, F, 3)``, ``(M, F, 3, 3)``.
        noise_px, dropout: ``(M,)`` pixel noise std and drop probability per env.
        normal, uniform: ``(M, F, P, 2)`` and ``(M, F, P)`` draws of the env's random streams.
        occluded: ``(M, F, P)`` bool, keypoints behind an occluder.

    Returns:
        ``uv (M, F, P, 2)`` detected pixels (the true projection plus noise; zeros where
        unseen) and ``visible (M, F, P)`` bool. Visibility comes from the true projection
        (in front, inside the image, not occluded), then dropout; noise moves pixels only.
    """
    uv, depth = project(points, R, c, K)
    inside = ((depth > NEAR) & (uv[..., 0] >= 0) & (uv[..., 0] < width)
              & (uv[..., 1] >= 0) & (uv[..., 1] < height))
    if occluded is not None:
        inside = inside & ~occluded
    visible = inside & (uniform >= dropout[:, None, None])
    uv = uv + normal * noise_px[:, None, None, None]
    return torch.where(visible[..., None], uv, torch.zeros_like(uv)), visible

