"""Where resets start: clip and phase draws with PHC's hard-negative mining (Luo et al. 2023).

A mixin of :class:`~rlkd.envs.humanoid.env.HumanoidMotionEnv`. Every reset draws a clip and a
start time from the env's per-env random streams (two uniforms ``u0, u1`` per reset, as always).

**Failure statistics** (kept whatever the knobs, as env tensors, so ``state_dict`` saves them):
the phase of each clip is cut into ``B = hard_negative_bins`` equal bins; ``hn_fail (C, B)`` is an
exponential moving average, over the finished episodes that *started* in bin ``b`` of clip ``i``,
of ``1`` if that episode ended in a termination (fall or tracking failure) and ``0`` if it ran
to the time limit: ``f <- (1 - beta)^n f + (1 - (1 - beta)^n) * (failures / n)`` for the ``n``
episodes of one step (``beta = hard_negative_rate``; the same as ``n`` updates in a row with their
mean). ``hn_episodes`` / ``hn_failures (C, B)`` count them. Episodes that started in a recovery
state (:mod:`.recovery`) are not counted. :meth:`ClipSampling.clip_stats` reports them per clip.

**Draws**: without ``hard_negative`` a clip is drawn in proportion to its weight ``w_i`` (the
motion spec's ``*`` / ``weight:``) and the start time uniformly over the clip (``init_phase=
"random"``; ``"start"``: time 0). Equal weights take the original draw ``clip = floor(u0 C)``,
``t0 = u1 duration``, so existing configs reset exactly as before. With ``hard_negative``::

    F_i  = mean_b f_ib                                   clip failure rate
    p_i  = w_i (eps + F_i)^alpha / sum_j w_j (eps + F_j)^alpha          clip probability
    q_ib = (eps + f_ib)^alpha / sum_c (eps + f_ic)^alpha               phase bin given the clip

and the start time is uniform inside the drawn bin. Both draws invert the cumulative
distributions at ``u0`` and ``u1`` (batched ``searchsorted``, no Python loop over envs); the
position inside the bin reuses what is left of ``u1``. ``eps`` keeps every clip and bin in play
(a bin that never fails keeps ``eps / (eps + 1)`` of the odds of one that always fails, at
``alpha = 1``); before any episode has finished, ``f = 0`` and the draws follow the weights.

**Forced starts** (:meth:`ClipSampling.force_starts`, for evaluation): chosen envs start every
episode at a given clip and time instead (the uniforms are still drawn, so the other envs'
streams do not move).
"""

from __future__ import annotations

import torch


class ClipSampling:
    """Mixin: reset clip/phase draws and per-clip failure statistics (module docstring)."""

    def _init_sampling(self) -> None:
        c, dev = self.cfg, self.device
        C, B = self.motions.num_clips, c.hard_negative_bins
        w = self.motions.weights
        #: ``(C, B)`` EMA failure rate per clip and start-phase bin, and episode/failure counts.
        self.hn_fail = torch.zeros(C, B, device=dev)
        self.hn_episodes = torch.zeros(C, B, dtype=torch.int64, device=dev)
        self.hn_failures = torch.zeros(C, B, dtype=torch.int64, device=dev)
        #: ``(N,)`` phase bin each env's episode started in.
        self.start_bin = torch.zeros(self.num_envs, dtype=torch.int64, device=dev)
        #: ``(N,)`` clip (-1: drawn) and start time (s) of every episode of an env
        #: (:meth:`force_starts`).
        self.forced_clip = torch.full((self.num_envs,), -1, dtype=torch.int64, device=dev)
        self.forced_t0 = torch.zeros(self.num_envs, device=dev)
        self._plain_draws = not c.hard_negative and bool((w == w[0]).all())

    def force_starts(self, clip_ids: torch.Tensor | None, times: torch.Tensor | None = None
                     ) -> None:
        """From the next reset on, env ``i`` starts every episode at clip ``clip_ids[i]``
        (``(N,)`` int; -1: drawn as usual) and time ``times[i]`` s (default 0; clamped to the
        clip); ``None`` clears. Evaluation uses it to run E episodes of every clip in one batch."""
        if clip_ids is None:
            self.forced_clip.fill_(-1)
            return
        ids = torch.as_tensor(clip_ids, dtype=torch.int64, device=self.device).reshape(-1)
        if ids.numel() != self.num_envs or bool((ids >= self.motions.num_clips).any()):
            raise ValueError(f"force_starts needs {self.num_envs} clip ids below "
                             f"{self.motions.num_clips} (-1: drawn), got {ids.numel()}")
        t = torch.zeros(self.num_envs, device=self.device) if times is None else torch.as_tensor(
            times, dtype=torch.float32, device=self.device).reshape(-1)
        dur = self.motions.duration[ids.clamp(min=0)].float()
        self.forced_clip.copy_(ids)
        self.forced_t0.copy_(torch.minimum(t.clamp(min=0.0), dur))

    def sampling_probabilities(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(p (C,), q (C, B))``: the probability that a reset draws clip ``i``, and its phase bin
        ``b`` given the clip (uniform without ``hard_negative``), as in the module docstring."""
        c = self.cfg
        w = self.motions.weights
        B = c.hard_negative_bins
        if not c.hard_negative:
            return w / w.sum(), torch.full((len(w), B), 1.0 / B, device=self.device)
        score = (c.hard_negative_eps + self.hn_fail).pow(c.hard_negative_alpha)     # (C, B)
        p = w * (c.hard_negative_eps + self.hn_fail.mean(-1)).pow(c.hard_negative_alpha)
        return p / p.sum(), score / score.sum(-1, keepdim=True)

    def _draw_starts(self, env_ids: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
        """``(clip (M,) int64, t0 (M,) s)`` for the resetting ``env_ids`` from uniforms ``u
        (M, 2)``; records each env's start bin."""
        n, B = self.motions.num_clips, self.cfg.hard_negative_bins
        start = self.cfg.init_phase == "start"
        if self._plain_draws:  # the original draw (bit-identical for equal weights)
            clip = torch.minimum((u[:, 0] * n).long(), torch.tensor(n - 1, device=self.device))
            frac = torch.zeros_like(u[:, 1]) if start else u[:, 1]
        else:
            p, q = self.sampling_probabilities()
            cdf = p.cumsum(0)
            clip = torch.searchsorted(cdf, (u[:, :1] * cdf[-1]).contiguous(), right=True)[:, 0]
            clip = clip.clamp(max=n - 1)
            if start:
                frac = torch.zeros_like(u[:, 1])
            elif not self.cfg.hard_negative:
                frac = u[:, 1]
            else:  # the bin by inversion at u1, then the rest of u1 places the time inside it
                rows = q.index_select(0, clip).cumsum(-1)                          # (M, B)
                x = u[:, 1:] * rows[:, -1:]
                b = torch.searchsorted(rows, x.contiguous(), right=True).clamp(max=B - 1)
                lo = torch.where(b > 0, rows.gather(1, (b - 1).clamp(min=0)), torch.zeros_like(x))
                width = (rows.gather(1, b) - lo).clamp_min(1e-12)
                inside = ((x - lo) / width).clamp(0.0, 1.0 - 1e-6)
                frac = ((b.to(x.dtype) + inside) / B)[:, 0]
        t0 = frac * self.motions.duration[clip].float()
        forced = self.forced_clip[env_ids]
        if bool((forced >= 0).any()):
            clip = torch.where(forced >= 0, forced, clip)
            t0 = torch.where(forced >= 0, self.forced_t0[env_ids], t0)
            frac = t0 / self.motions.duration[clip].float()
        self.start_bin[env_ids] = (frac * B).long().clamp(0, B - 1)
        return clip, t0

    def _record_episodes(self, ended: torch.Tensor, failed: torch.Tensor,
                         counted: torch.Tensor) -> None:
        """Fold the episodes ending this step (``ended``, ``failed``, ``counted``: ``(N,)`` bool)
        into the failure statistics of their start bins (module docstring)."""
        sel = ended & counted
        if not bool(sel.any()):
            return
        C, B = self.hn_fail.shape
        key = (self.clip_ids * B + self.start_bin)[sel]
        n = torch.bincount(key, minlength=C * B).view(C, B)
        k = torch.bincount(key, weights=failed[sel].double(), minlength=C * B).view(C, B)
        keep = (1.0 - self.cfg.hard_negative_rate) ** n.double()
        mean = k / n.clamp_min(1).double()
        fresh = keep * self.hn_fail.double() + (1.0 - keep) * mean
        self.hn_fail = torch.where(n > 0, fresh, self.hn_fail.double()).float()
        self.hn_episodes += n
        self.hn_failures += k.round().long()

    def episode_groups(self) -> tuple[tuple[str, ...], torch.Tensor]:
        """``(clip names, (num_envs,) int64 clip of each env's current episode)``: the grouping
        ``rlkd eval sim2real`` reports per clip."""
        return tuple(self.motions.names), self.clip_ids.clone()

    def clip_stats(self) -> list[dict]:
        """Per clip (library order): ``name``, ``weight``, ``probability`` (of a reset drawing it
        now), ``fail_rate`` (mean over its bins of the EMA failure rate), ``episodes`` and
        ``failures`` counted, and ``bins`` (the EMA per phase bin)."""
        p, _ = self.sampling_probabilities()
        return [{"name": name, "weight": float(self.motions.weights[i]),
                 "probability": float(p[i]), "fail_rate": float(self.hn_fail[i].mean()),
                 "episodes": int(self.hn_episodes[i].sum()),
                 "failures": int(self.hn_failures[i].sum()),
                 "bins": [round(float(x), 4) for x in self.hn_fail[i]]}
                for i, name in enumerate(self.motions.names)]
