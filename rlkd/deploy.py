"""Deployment files: a trained actor as an ONNX or TorchScript graph, and loading such files back
as policies (``rlkd play`` / ``rlkd eval`` accept them like a run).

    rlkd export runs/agv --format onnx --out agv.onnx          # or --format torchscript
    policy = rlkd.policies.load_policy("agv.onnx")             # a DeployedPolicy

The graph (:class:`DeployActor`) reads one input per observation group the actor reads, named
after the group, ``(batch, *shape)``: float32 for flat groups, **uint8** for image groups (the
graph scales them to [0, 1] itself, as the training model does). The observation normalizer is
folded in as constants (frozen mean, std, clip) and the output ``action`` is the mean action
clamped to [-1, 1]: exactly :class:`rlkd.policies.LoadedPolicy`'s computation, so a deployment
runtime needs no rlkd code.

Metadata (:func:`deploy_metadata`; ONNX ``metadata_props``, TorchScript extra file
:data:`TS_META_FILE`): ``obs_groups`` (name, per-env shape, dtype, in input order), ``act_dim``,
``action`` (range [-1, 1] and the env's ``action_mode``), ``env_id``, ``env_overrides``,
``agent``, ``train_config`` and ``provenance``. Non-string values are JSON.

Runtimes: ONNX files run on ``onnxruntime`` when it is installed, else on onnx's reference
evaluator (slow, exact enough for tests); both come with ``pip install "rlkd[deploy]"``.
TorchScript needs torch only, but **loading a TorchScript file runs code stored in it**: load
only files you trust, which is why only a path the user names explicitly (suffix ``.ts`` /
``.torchscript``) is ever loaded this way.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlkd.train.checkpoint import CheckpointError

FORMAT = "rlkd-deploy"
VERSION = 1
#: Suffix -> format of the files :func:`rlkd.policies.load_policy` recognises.
SUFFIXES = {".onnx": "onnx", ".ts": "torchscript", ".torchscript": "torchscript"}
#: Name of the metadata file inside a TorchScript archive (``torch.jit.load(_extra_files=...)``).
TS_META_FILE = "rlkd_meta.json"
#: Metadata values stored as JSON (the others are plain strings).
_JSON_KEYS = ("obs_groups", "act_dim", "action", "env_overrides", "train_config", "provenance",
              "normalizer", "version")
#: Largest |difference| between the exported graph's actions and torch's accepted at export.
VERIFY_ATOL = 1e-5


def deploy_format(path: str | Path) -> str | None:
    """``"onnx"`` / ``"torchscript"`` for a deployment file's suffix, else ``None``."""
    return SUFFIXES.get(Path(path).suffix.lower())


def _require(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{what} needs the '{module}' package: pip install \"rlkd[deploy]\"") \
            from e


# ---------------------------------------------------------------------------------- the graph
class DeployActor(nn.Module):
    """The actor of an :class:`~rlkd.nn.policy.ActorCritic` as a function of plain tensors:
    ``forward(*inputs)`` (one per group in :attr:`groups`, ``(B, *shape)``) -> ``(B, A)`` mean
    actions clamped to [-1, 1].

    The normalizer statistics become float32 buffers ``mean_<i>`` / ``std_<i>`` computed once
    the way :meth:`~rlkd.nn.normalizer.RunningMeanStd.normalize` computes them per call
    (``sqrt(var + eps)`` in float32), so the graph's arithmetic is the model's, operation for
    operation. The encoder's CNNs / MLPs and the actor trunk are copies of the model's modules
    with ``requires_grad`` off (a deployed graph returns plain tensors; the model is untouched).
    """

    def __init__(self, model):
        super().__init__()
        enc = model.actor_encoder
        self.groups: list[str] = list(enc.groups)
        self.cnn, self.mlp, self.actor = (copy.deepcopy(m) for m in (enc.cnn, enc.mlp, model.actor))
        self.requires_grad_(False)
        self._normalized: list[bool] = []
        self._clip: list[float | None] = []
        for i, g in enumerate(self.groups):
            norm = enc.norm[g] if (enc.normalize and g in enc.norm) else None
            self._normalized.append(norm is not None)
            self._clip.append(None if norm is None else norm.clip)
            if norm is not None:
                mean = norm.mean.detach().to(torch.float32).reshape(-1)
                std = torch.sqrt(norm.var.detach().to(torch.float32).reshape(-1) + norm.eps)
                self.register_buffer(f"mean_{i}", mean.clone())
                self.register_buffer(f"std_{i}", std)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        feats = []
        for i, (g, x) in enumerate(zip(self.groups, inputs)):
            if g in self.cnn:  # uint8 (B, ..., C, H, W): leading dims fold into channels
                x = x.reshape(x.shape[0], -1, x.shape[-2], x.shape[-1])
                feats.append(self.cnn[g](x.to(torch.float32) / 255.0))
                continue
            x = x.flatten(1)
            if self._normalized[i]:
                x = (x - getattr(self, f"mean_{i}")) / getattr(self, f"std_{i}")
                if self._clip[i] is not None:
                    x = x.clamp(-self._clip[i], self._clip[i])
            feats.append(self.mlp[g](x) if g in self.mlp else x)
        h = feats[0] if len(feats) == 1 else torch.cat(feats, -1)
        return self.actor(h).clamp(-1.0, 1.0)


def deploy_metadata(policy, provenance: dict | None = None) -> dict[str, Any]:
    """The metadata of a deployment file for ``policy`` (a :class:`~rlkd.policies.LoadedPolicy`)."""
    spec = policy.model.spec()
    groups = [{"name": g, "shape": list(spec["specs"][g]["shape"]),
               "dtype": spec["specs"][g]["dtype"]} for g in policy.obs_groups]
    norm = {"folded": bool(spec["normalize_obs"]), "frozen": True, "clip": 10.0, "eps": 1e-8}
    for g in policy.obs_groups:  # the actual clip/eps of the model's normalizers
        n = policy.model.actor_encoder.norm[g] if g in policy.model.actor_encoder.norm else None
        if n is not None:
            norm.update(clip=n.clip, eps=n.eps)
            break
    return {"format": FORMAT, "version": VERSION, "obs_groups": groups,
            "act_dim": int(spec["act_dim"]),
            "action": {"low": -1.0, "high": 1.0, "output": "mean action clamped to [-1, 1]",
                       "action_mode": policy.action_mode},
            "env_id": policy.env_id, "env_overrides": dict(policy.env_overrides),
            "agent": policy.agent, "train_config": policy.train_config,
            "normalizer": norm, "provenance": {**policy.provenance, **(provenance or {})}}


def example_inputs(obs_groups: list[dict], batch: int = 2, seed: int = 0) -> tuple:
    """Random inputs of the graph: uniform uint8 images, standard-normal flat groups."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for g in obs_groups:
        shape = (batch, *g["shape"])
        if g["dtype"] == "uint8":
            out.append(torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8))
        else:
            out.append(torch.randn(shape, generator=gen))
    return tuple(out)


def _check_close(got: np.ndarray, want: torch.Tensor, fmt: str, out: Path) -> None:
    err = float(np.abs(np.asarray(got, dtype=np.float64) - want.double().numpy()).max())
    if not err <= VERIFY_ATOL:
        raise RuntimeError(f"exported {fmt} graph {out} differs from the torch actor by {err:.3g} "
                           f"(> {VERIFY_ATOL}); the file was not written")


# ---------------------------------------------------------------------------------- writers
def export_onnx(policy, out: str | Path, provenance: dict | None = None,
                opset: int | None = None) -> Path:
    """Write ``policy``'s actor as an ONNX graph with a dynamic batch dimension to ``out``
    (atomically), after checking that the graph reproduces torch's actions on random inputs
    (:data:`VERIFY_ATOL`). Needs ``onnx`` and ``onnxscript`` (torch's exporter): the
    ``deploy`` extra."""
    from rlkd.core.atomic import atomic_write

    onnx = _require("onnx", "ONNX export")
    _require("onnxscript", "ONNX export (torch.onnx's exporter)")
    out = Path(out)
    meta = deploy_metadata(policy, provenance)
    actor = DeployActor(policy.model).cpu().eval()
    args = example_inputs(meta["obs_groups"], batch=2)
    batch = torch.export.Dim("batch")  # batch 2 at tracing, any batch (>= 1) at run time
    with torch.no_grad():
        program = torch.onnx.export(
            actor, args, input_names=list(policy.obs_groups), output_names=["action"],
            dynamic_shapes=(tuple({0: batch} for _ in args),),
            dynamo=True, opset_version=opset, external_data=False, verbose=False)
    proto = program.model_proto
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, json.dumps(v) if k in _JSON_KEYS else str(v)
    proto.producer_name = "rlkd"
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    check = example_inputs(meta["obs_groups"], batch=3, seed=1)
    with torch.no_grad():
        want = actor(*check)
    got = _onnx_runner(data)({g: x.numpy() for g, x in
                                                       zip(policy.obs_groups, check)})
    _check_close(got, want, "ONNX", out)
    atomic_write(out, lambda f: f.write(data))
    return out


def export_torchscript(policy, out: str | Path, provenance: dict | None = None) -> Path:
    """Write ``policy``'s actor as a traced TorchScript module to ``out`` (atomically), the
    metadata in its extra file :data:`TS_META_FILE`; checked against torch at another batch
    size (:data:`VERIFY_ATOL`). Call it as ``module(*inputs)`` in the ``obs_groups`` order.

    torch 2.13 deprecates TorchScript (``torch.jit``) in favour of ``torch.export``; its files
    still load in ``torch.jit.load`` and libtorch (C++), which is what this format is for. The
    deprecation warnings of this one call are silenced (the user asked for the format)."""
    from rlkd.core.atomic import atomic_write

    out = Path(out)
    meta = deploy_metadata(policy, provenance)
    actor = DeployActor(policy.model).cpu().eval()
    args = example_inputs(meta["obs_groups"], batch=2)
    check = example_inputs(meta["obs_groups"], batch=3, seed=1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit")
        # Tracing records the ops of one call; the batch size stays symbolic (x.shape[0]).
        traced = torch.jit.trace(actor, args, check_trace=False)
        _check_close(traced(*check).numpy(), actor(*check), "TorchScript", out)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={TS_META_FILE: json.dumps(meta)})
    atomic_write(out, lambda f: f.write(buf.getbuffer()))
    return out


# ---------------------------------------------------------------------------------- loading
def _onnx_runner(model: bytes | str):
    """``feeds -> (B, A) ndarray`` on onnxruntime (CPU) or, without it, onnx's reference
    evaluator."""
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        opts = ort.SessionOptions()
        # As many threads as torch uses: a policy call must not oversubscribe the env's cores.
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        return lambda feeds: sess.run(["action"], feeds)[0]
    onnx = _require("onnx", "running an ONNX policy")
    from onnx.reference import ReferenceEvaluator

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(model)
    ref = ReferenceEvaluator(proto)
    return lambda feeds: ref.run(["action"], feeds)[0]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an ONNX / TorchScript deployment file (JSON values decoded).

    Reading a TorchScript file's metadata opens its zip archive only; no code runs."""
    path = Path(path)
    fmt = deploy_format(path)
    if fmt is None or not path.is_file():
        raise CheckpointError(f"{path} is not an ONNX / TorchScript file (suffixes "
                              f"{sorted(SUFFIXES)}) or does not exist")
    try:
        if fmt == "onnx":
            onnx = _require("onnx", "reading an ONNX policy")
            proto = onnx.load(str(path), load_external_data=False)
            meta = {p.key: (json.loads(p.value) if p.key in _JSON_KEYS else p.value)
                    for p in proto.metadata_props}
        else:
            import zipfile

            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("extra/" + TS_META_FILE)), None)
                meta = json.loads(z.read(name)) if name else {}
    except ImportError:
        raise
    except Exception as e:  # a truncated or foreign file: one clear error naming it
        raise CheckpointError(f"{path}: cannot read it as a {fmt} file: {e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} holds no rlkd deployment metadata (exported by another "
                              f"tool?); export it with `rlkd export RUN --format {fmt}`")
    return meta


class DeployedPolicy:
    """An ONNX / TorchScript deployment file as a policy, with
    :class:`~rlkd.policies.LoadedPolicy`'s interface: ``policy(obs) -> (N, A)`` actions in
    [-1, 1] on the device of the observations, ``obs_groups``, ``env_id``, ``env_overrides``,
    ``action_mode``, ``agent``, ``train_config``, ``provenance``, ``source``, ``metadata``.

    ``format`` is ``"onnx"`` (runs on the CPU whatever ``device``: observations are copied
    there and actions back) or ``"torchscript"`` (runs on ``device``).
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        path = Path(path)
        self.metadata = read_metadata(path)
        self.format = deploy_format(path)
        self.source = path
        self.train_config = dict(self.metadata.get("train_config") or {})
        self.env_id: str = self.metadata["env_id"]
        self.env_overrides: dict = dict(self.metadata.get("env_overrides") or {})
        self.agent: str = self.metadata.get("agent", "")
        self.action_mode: str = self.metadata["action"]["action_mode"]
        self.provenance = dict(self.metadata.get("provenance") or {})
        self._groups = [g["name"] for g in self.metadata["obs_groups"]]
        self._dtypes = {g["name"]: g["dtype"] for g in self.metadata["obs_groups"]}
        self._device = torch.device(device)
        self.model = None
        if self.format == "onnx":
            self._run = _onnx_runner(str(path))
        else:
            # Runs code from the file (TorchScript): only for paths the user passed explicitly.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=DeprecationWarning,
                                        message=".*torch.jit")
                self.model = torch.jit.load(str(path), map_location=self._device).eval()

    @property
    def obs_groups(self) -> list[str]:
        return list(self._groups)

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device) -> "DeployedPolicy":
        self._device = torch.device(device)
        if self.model is not None:
            self.model.to(self._device)
        return self

    @torch.no_grad()
    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = [g for g in self._groups if g not in obs]
        if missing:
            raise KeyError(f"policy {self.source.name} reads observation groups {missing}, "
                           f"absent from the given obs ({sorted(obs)})")
        out_device = obs[self._groups[0]].device
        dt = {g: torch.uint8 if self._dtypes[g] == "uint8" else torch.float32
              for g in self._groups}
        if self.model is not None:
            xs = [obs[g].to(self._device, dt[g]) for g in self._groups]
            return self.model(*xs).to(out_device)
        feeds = {g: obs[g].detach().to("cpu", dt[g]).contiguous().numpy() for g in self._groups}
        return torch.from_numpy(np.asarray(self._run(feeds))).to(out_device)

    def __repr__(self) -> str:
        return (f"DeployedPolicy({self.source.name}: {self.format}, {self.env_id}, reads "
                f"{self.obs_groups}, action_mode {self.action_mode})")


__all__ = ["DeployActor", "DeployedPolicy", "deploy_metadata", "deploy_format", "export_onnx",
           "export_torchscript", "read_metadata", "SUFFIXES", "TS_META_FILE"]
