"""Batched tactile RGB image of two finger pads touching a cylindrical peg (after TacSL 2024).

TacSL renders a GelSight-style image from a calibrated lookup table (NVIDIA-licensed data); we
use our own three-light shading model instead. Computed on torch tensors for every env at once,
once per control step, from the same poses as the force field (:mod:`.sensor`).

**Pad frame and pixel grid**: the sensor module's pad frame (metres; ``z`` = the pad surface
normal towards the peg, ``y`` = towards the fingertip). Pixel ``(row, col)`` of the ``H x W``
image sits where taxel ``(row, col)`` of an ``H x W`` taxel grid would sit, covering the same
pad rectangle: ``x = (col - (W-1)/2) * p_x``, ``y = (row - (H-1)/2) * p_y`` with pixel pitch
``p_x = pad_width / W``, ``p_y = pad_height / H`` (m). Rows run along the finger (row 0 at the
hand end, the last row at the fingertip), columns across it, exactly like the field's taxels.
The depth is computed by a second :class:`~.sensor.TactileSensor` on that grid (the same pad
transform and :func:`~.sensor.cylinder_sdf`).

**Model** (per env, pad and pixel; ``d`` depth m, ``h`` height m, intensities in 0..255 units):

1. ``h = blur(min(d, max_depth))``: penetration depth clipped to the gel's depth, then a
   separable Gaussian blur of ``blur`` pixels' sigma (the elastomer spreading the indentation;
   kernel radius ``ceil(3 sigma)``, the border pixels replicated beyond the pad).
2. Surface normal from the height map's gradients, slopes in m per m (central differences over
   the pixel pitch, one-sided at the border): ``n = (-dh/dx, -dh/dy, 1) / |.|``, components
   along the pad's x, y and towards the camera behind the gel (the indentation pushes the gel
   surface towards it).
3. Three coloured lights (like GelSight's LEDs): light ``k`` (red, green, blue) shines from
   azimuth ``90 + 120 k`` degrees in the pad's x-y plane (red from the fingertip side, +y) at
   elevation ``ELEVATION`` (30 deg), unit direction ``l_k``; the camera looks along the
   normal, ``v = (0, 0, 1)``. Phong: ``S_k(n) = KD max(0, n.l_k) + KS max(0, r_k.v)^SHININESS``
   with ``r_k = 2 (n.l_k) n - l_k``, lighting only channel ``k``.
4. ``I_k = background_k + GAIN (S_k(n) - S_k(flat))`` where ``h > 0`` and
   ``I_k = background_k`` elsewhere, plus optional per-env Gaussian noise (std in intensity
   units, drawn from the env's random streams), rounded and clipped to ``uint8``.

``background`` ``(3, H, W)`` uint8 is a fixed, smooth, slightly non-uniform flat-gel image
(each channel a little brighter towards its light, a mild vignette), the same for both pads and
every step. Without contact (and without noise) the image *is* the background, bit for bit; a
contact changes pixels only where the blurred depth is > 0, and changes them by the slope of
the gel (a flat plateau reads as the background, as on a real GelSight sensor).

Eager (the default) shades only the pressed pixels (:func:`shade_sparse`); ``compile=True``
shades every pixel (:func:`shade`, the reference) through ``torch.compile``.

Also here: the render helpers of the tactile task (:func:`tactile_panels`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .sensor import TactileSensor

#: Light elevation above the gel plane, rad, and azimuths of the red, green, blue lights, rad
#: (from the pad's x towards its y axis).
ELEVATION = math.radians(30.0)
AZIMUTHS = tuple(math.radians(90.0 + 120.0 * k) for k in range(3))
#: Phong coefficients: diffuse, specular, shininess; GAIN: intensity units per unit of shading.
KD, KS, SHININESS, GAIN = 1.0, 0.5, 10, 150.0
#: Flat-gel background: mean level per channel, brightening towards each light, vignette
#: (intensity units, at the pad's edge / corner).
BG_LEVEL, BG_TILT, BG_VIGNETTE = (110.0, 115.0, 120.0), 18.0, 14.0


def light_directions(device=None) -> torch.Tensor:
    """``(3, 3)`` unit vectors towards the red, green, blue lights (rows; pad x, y, camera)."""
    c, s = math.cos(ELEVATION), math.sin(ELEVATION)
    return torch.tensor([[c * math.cos(a), c * math.sin(a), s] for a in AZIMUTHS],
                        dtype=torch.float32, device=device)


def flat_background(height: int, width: int) -> torch.Tensor:
    """The deterministic flat-gel image, ``(3, H, W)`` float32 holding integers in 0..255."""
    u = torch.linspace(-1.0, 1.0, width, dtype=torch.float64) if width > 1 else torch.zeros(1)
    v = torch.linspace(-1.0, 1.0, height, dtype=torch.float64) if height > 1 else torch.zeros(1)
    vv, uu = torch.meshgrid(v.double(), u.double(), indexing="ij")
    out = []
    for level, a in zip(BG_LEVEL, AZIMUTHS):
        toward = uu * math.cos(a) + vv * math.sin(a)          # +1 at the side of this light
        out.append(level + BG_TILT * toward - BG_VIGNETTE * (uu.square() + vv.square()) / 2)
    return torch.stack(out).round().clamp(0, 255).float()


def blur_matrix(n: int, sigma: float) -> torch.Tensor:
    """``(n, n)`` float32 operator of a 1-D Gaussian blur along an axis of ``n`` pixels: taps
    ``exp(-j^2 / (2 sigma^2))`` for ``|j| <= ceil(3 sigma)``, normalized, the border pixels
    replicated beyond the ends (so rows sum to 1); the identity at ``sigma = 0``."""
    if sigma <= 0:
        return torch.eye(n)
    r = int(math.ceil(3.0 * sigma))
    j = torch.arange(-r, r + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (j / sigma).square())
    taps = taps / taps.sum()
    m = torch.zeros(n, n, dtype=torch.float64)
    rows = torch.arange(n)[:, None].expand(n, 2 * r + 1)
    cols = (torch.arange(n)[:, None] + torch.arange(-r, r + 1)[None]).clamp(0, n - 1)
    m.index_put_((rows, cols), taps.expand(n, -1), accumulate=True)
    return m.float()


def diff_matrix(n: int, pitch: float) -> torch.Tensor:
    """``(n, n)`` float32 derivative operator along an axis, 1/m: central differences
    ``(h[i+1] - h[i-1]) / (2 pitch)`` inside, one-sided at the ends; zero for ``n = 1``."""
    m = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        lo, hi = max(i - 1, 0), min(i + 1, n - 1)
        if hi > lo:
            m[i, hi] += 1.0 / ((hi - lo) * pitch)
            m[i, lo] -= 1.0 / ((hi - lo) * pitch)
    return m.float()


def height_map(depth: torch.Tensor, blur_rows: torch.Tensor, blur_cols: torch.Tensor,
               max_depth: float) -> torch.Tensor:
    """Step 1: depth ``(N, P, H, W)`` m -> the clipped, blurred height map ``(N, P, H, W)`` m
    (``blur_rows`` ``(H, H)``, ``blur_cols`` ``(W, W)``: :func:`blur_matrix` operators, the
    separable blur as two matrix products)."""
    return blur_rows @ (depth.clamp(0.0, max_depth) @ blur_cols.T)


def slopes(depth: torch.Tensor, ops: tuple[torch.Tensor, ...], max_depth: float
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 1-2: depth ``(N, P, H, W)`` m -> height ``h`` (m) and its slopes ``dh/dx``,
    ``dh/dy`` (m per m), each ``(N, P, H, W)``. ``ops`` = ``(blur_rows (H, H), blur_cols (W,
    W), d_dy (H, H), d_dx (W, W))`` (:func:`blur_matrix`, :func:`diff_matrix`, 1/m)."""
    b_rows, b_cols, d_dy, d_dx = ops
    h = height_map(depth, b_rows, b_cols, max_depth)
    return h, h @ d_dx.T, d_dy @ h


def shading_delta(gx: torch.Tensor, gy: torch.Tensor, lx: torch.Tensor, ly: torch.Tensor,
                  lz: torch.Tensor) -> torch.Tensor:
    """Steps 2-4 per pixel: ``GAIN (S_k(n) - S_k(flat))`` for slopes ``gx = dh/dx``, ``gy =
    dh/dy`` (m per m) and light components ``lx, ly, lz``, all broadcast together (the lights
    along a channel axis), intensity units. ``n = (-gx, -gy, 1) / |.|``; the reflection
    ``r_k = 2 (n . l_k) n - l_k`` has ``r_k . v = 2 (n . l_k) n_z - l_{k,z}``."""
    nz = torch.rsqrt(gx * gx + gy * gy + 1.0)
    ndl = (lz - gx * lx - gy * ly) * nz
    rv = (2.0 * ndl * nz - lz).clamp_min(0.0)
    r2 = rv * rv
    s = KD * ndl.clamp_min(0.0) + KS * ((r2 * r2).square() * r2)      # SHININESS = 10
    flat = KD * lz.clamp_min(0.0) + KS * ((lz * lz) * (lz * lz)).square() * (lz * lz)
    return GAIN * (s - flat)


def shade(depth: torch.Tensor, background: torch.Tensor, ops: tuple[torch.Tensor, ...],
          max_depth: float, lights: torch.Tensor) -> torch.Tensor:
    """Depth ``(N, P, H, W)`` m -> float image ``(N, P, 3, H, W)`` (intensity units, unrounded),
    every pixel computed (the ``torch.compile`` path and the reference of the eager one).

    ``background`` ``(3, H, W)``; ``ops`` as for :func:`slopes`; ``lights`` ``(3, 3)`` unit
    light directions (rows). Steps 1-4 of the module docstring without the noise.
    """
    h, gx, gy = slopes(depth, ops, max_depth)
    lx, ly, lz = (lights[:, i].view(3, 1, 1) for i in range(3))
    delta = shading_delta(gx[:, :, None], gy[:, :, None], lx, ly, lz)   # (N, P, 3, H, W)
    return background + torch.where((h > 0)[:, :, None], delta, 0.0)


def shade_sparse(depth: torch.Tensor, background: torch.Tensor, ops: tuple[torch.Tensor, ...],
                 max_depth: float, lights: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The eager path of :func:`shade`: the shading only at the ``K`` pixels where ``h > 0``.
    Returns ``(index (K,) int64, delta (K, 3))``: flat pixel indices into ``(N, P, H, W)`` and
    their intensity changes; every other pixel is the background (same formulas, ~5x less
    work than :func:`shade` for a typical grasp)."""
    h, gx, gy = slopes(depth, ops, max_depth)
    index = (h.reshape(-1) > 0).nonzero().squeeze(1)
    lx, ly, lz = lights[:, 0], lights[:, 1], lights[:, 2]
    delta = shading_delta(gx.reshape(-1)[index, None], gy.reshape(-1)[index, None], lx, ly, lz)
    return index, delta


class TactileImager:
    """GelSight-style RGB images of ``P`` pads on one peg, batched over envs.

    Args:
        width, height: pad surface size along the pad's x (columns) and y (rows), m.
        peg_radius, peg_half_length: the peg cylinder, m.
        pad_offsets, pad_rotations: ``(P, 3)``, ``(P, 3, 3)`` as for :class:`TactileSensor`.
        rows, cols: image size ``H x W`` per pad (default 80 x 60), each >= 1.
        blur: Gaussian blur sigma, pixels (>= 0; 0 = none).
        max_depth: gel depth, m (> 0): deeper penetration reads as this.
        compile: the depth and every pixel's shading (:func:`shade`) through
            ``torch.compile`` (measured on one CPU thread, 64 envs, 80 x 60: ~210 instead of ~465
            us per env; 10-30 s to compile; results equal eager's to +-1 intensity level);
            default: eager, the shading only where the gel is pressed (:func:`shade_sparse`).
        device: torch device.

    Raises ``ValueError`` naming the argument for an empty image, a negative / non-finite blur
    or a non-positive gel depth (and whatever :class:`TactileSensor` refuses).
    """

    def __init__(self, width: float, height: float, peg_radius: float, peg_half_length: float,
                 pad_offsets: torch.Tensor, pad_rotations: torch.Tensor, rows: int = 80,
                 cols: int = 60, blur: float = 1.0, max_depth: float = 0.0015,
                 compile: bool = False, device: str | torch.device = "cpu"):
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"tactile image {name}={v!r}: the image must not be empty "
                                 f"(rows and cols are ints >= 1)")
        if not (isinstance(blur, (int, float)) and math.isfinite(blur) and blur >= 0):
            raise ValueError(f"tactile image blur={blur!r} must be a finite number >= 0 (pixels)")
        if not (isinstance(max_depth, (int, float)) and math.isfinite(max_depth) and max_depth > 0):
            raise ValueError(f"tactile image max_depth={max_depth!r} must be a finite number > 0 "
                             f"(m)")
        #: The pixel grid's geometry: a depth-only sensor of ``rows x cols`` points.
        self.grid = TactileSensor(rows, cols, width, height, peg_radius, peg_half_length,
                                  pad_offsets, pad_rotations, device=device)
        self.rows, self.cols, self.num_pads = rows, cols, self.grid.num_pads
        self.device = self.grid.device
        self.pitch = (float(height) / rows, float(width) / cols)    # (p_y, p_x), m per pixel
        self.blur, self.max_depth = float(blur), float(max_depth)
        b_rows, b_cols = blur_matrix(rows, self.blur), blur_matrix(cols, self.blur)
        #: The linear operators of :func:`slopes` (on ``device``): blur along rows, along
        #: columns, d/dy, d/dx.
        self.ops = tuple(t.to(self.device) for t in (
            b_rows, b_cols, diff_matrix(rows, self.pitch[0]), diff_matrix(cols, self.pitch[1])))
        self.lights = light_directions(self.device)
        #: ``(3, H, W)`` float32 (integer values) and uint8 flat-gel background.
        self.background_f = flat_background(rows, cols).to(self.device)
        self.background = self.background_f.to(torch.uint8)
        self._compiled = torch.compile(shade, dynamic=True) if compile else None
        self._depth = (torch.compile(self.grid.compute_depth, dynamic=True) if compile
                       else self.grid.compute_depth)

    #: Envs per block of the compiled path (see :meth:`render`).
    CHUNK = 64

    def depth(self, finger_pos: torch.Tensor, finger_quat: torch.Tensor, peg_pos: torch.Tensor,
              peg_quat: torch.Tensor) -> torch.Tensor:
        """``(N, P, H, W)`` float32 penetration depth at the pixels, m (finger poses ``(N, P,
        3)``, ``(N, P, 4)``; peg pose ``(N, 3)``, ``(N, 4)``; world)."""
        return self._depth(finger_pos, finger_quat, peg_pos, peg_quat)

    def height(self, depth: torch.Tensor) -> torch.Tensor:
        """``(N, P, H, W)`` blurred, clipped height map, m (step 1)."""
        return height_map(depth.float(), self.ops[0], self.ops[1], self.max_depth)

    def render(self, depth: torch.Tensor, noise_std: torch.Tensor | None = None, rng=None,
               env_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Depth ``(N, P, H, W)`` m -> ``uint8 (N, P, 3, H, W)``; ``noise_std`` ``(N,)``
        intensity units, drawn from ``rng`` (a :class:`BatchRNG`) for ``env_ids``."""
        n, p, hh, ww = depth.shape
        noisy = rng is not None and noise_std is not None and bool((noise_std > 0).any())
        args = (depth.float(), self.background_f, self.ops, self.max_depth, self.lights)
        if self._compiled is not None:
            # in blocks of CHUNK envs: a block's intermediates (~10 float maps of P x H x W per
            # env) stay in cache; all 512 envs at once ran 1.4x slower per env than 64 did
            img = torch.cat([self._compiled(d, *args[1:]) for d in args[0].split(self.CHUNK)])
        else:  # the background everywhere, then the shaded pixels written over it
            index, delta = shade_sparse(*args)
            pad_row, pix = index // (hh * ww), index % (hh * ww)       # (env, pad), pixel
            bg = self.background_f.reshape(3, -1)
            if not noisy:
                out = self.background.expand(n, p, 3, hh, ww).clone()
                out.view(n * p, 3, -1)[pad_row, :, pix] = (bg[:, pix].T + delta).round().clamp(
                    0, 255).to(torch.uint8)
                return out
            img = self.background_f.expand(n, p, 3, hh, ww).clone()
            img.view(n * p, 3, -1)[pad_row, :, pix] += delta
        if noisy:
            noise = rng.normal(env_ids, img[0].numel()).reshape(img.shape)
            img = img + noise * noise_std.float().view(-1, 1, 1, 1, 1)
        return img.round().clamp(0, 255).to(torch.uint8)

    def compute(self, finger_pos: torch.Tensor, finger_quat: torch.Tensor, peg_pos: torch.Tensor,
                peg_quat: torch.Tensor, *, noise_std: torch.Tensor | None = None, rng=None,
                env_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Poses (as :meth:`depth`) -> ``uint8 (N, P, 3, H, W)`` images (see :meth:`render`)."""
        if self._compiled is not None and len(peg_pos) > self.CHUNK:
            c = self.CHUNK
            depth = torch.cat([self.depth(finger_pos[i:i + c], finger_quat[i:i + c],
                                          peg_pos[i:i + c], peg_quat[i:i + c])
                               for i in range(0, len(peg_pos), c)])
        else:
            depth = self.depth(finger_pos, finger_quat, peg_pos, peg_quat)
        return self.render(depth, noise_std, rng, env_ids)


# ---------------------------------------------------------------------- rendering helpers
def false_colour(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] ``(...)`` -> ``uint8 (..., 3)`` on a black-red-yellow-white ramp."""
    x = np.clip(np.nan_to_num(np.asarray(x, dtype=np.float64)), 0.0, 1.0)
    rgb = np.stack((np.clip(3 * x, 0, 1), np.clip(3 * x - 1, 0, 1), np.clip(3 * x - 2, 0, 1)), -1)
    return (rgb * 255).round().astype(np.uint8)


def _upscale(img: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour ``(h, w, 3)`` -> ``(k h, k w, 3)``."""
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def _fit(img: np.ndarray, height: int, background: int = 32) -> np.ndarray:
    """Upscale ``(h, w, 3)`` by the largest integer that fits ``height`` rows and pad it there
    (centred vertically)."""
    k = max(1, height // img.shape[0])
    up = _upscale(img, k)[:height]
    out = np.full((height, up.shape[1], 3), background, dtype=np.uint8)
    top = (height - up.shape[0]) // 2
    out[top:top + up.shape[0]] = up
    return out


def tactile_panels(scene: np.ndarray, images: np.ndarray | None = None,
                   normal: np.ndarray | None = None, pad: int = 2,
                   background: int = 32) -> np.ndarray:
    """One env's frame: ``scene`` ``uint8 (h, w, 3)``, then (if given) each pad's tactile image
    ``images`` ``uint8 (P, 3, H, W)`` upscaled to the frame's height, then the field's normal
    channel ``normal`` ``(P, R, C)`` (N, >= 0) in false colour, the pads stacked in the frame's
    height, both scaled by their common maximum. Returns ``uint8 (h, w', 3)``."""
    h = scene.shape[0]
    panels = [scene]
    if images is not None:
        panels += [_fit(np.ascontiguousarray(im.transpose(1, 2, 0)), h, background)
                   for im in images]
    if normal is not None:
        normal = np.asarray(normal, dtype=np.float64)
        top = max(float(normal.max()), 1e-9)
        sub = max(1, (h - pad * (len(normal) - 1)) // len(normal))
        rows = [_fit(false_colour(f / top), sub, background) for f in normal]
        col = np.full((h, rows[0].shape[1], 3), background, dtype=np.uint8)
        for i, r in enumerate(rows):
            col[i * (sub + pad): i * (sub + pad) + sub] = r
        panels.append(col)
    gap = np.full((h, pad, 3), background, dtype=np.uint8)
    out = [panels[0]]
    for p_ in panels[1:]:
        out += [gap, p_]
    return np.concatenate(out, axis=1)


__all__ = ["TactileImager", "blur_matrix", "diff_matrix", "false_colour", "flat_background",
           "height_map", "light_directions", "shade", "shade_sparse", "shading_delta", "slopes",
           "tactile_panels"]
