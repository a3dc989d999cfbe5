"""The one training harness behind ``momu train vae|diffusion|vocoder``.

Each trainer (models/train_vae.py, train_diffusion.py, train_vocoder.py) builds its model(s), writes its losses
and its validation, and hands them to a :class:`Trainer`, which owns everything else:

- ``RunConfig``: the shared knobs (steps, batch, AdamW, warm-up + cosine LR, EMA, bf16, schedules, time budget,
  seed); each trainer's ``TrainConfig`` subclasses it with its own defaults and its model/loss fields;
- ``CropSampler``: seeded random aligned crops of time-last arrays at several frame rates (optional tempo warp);
- the step loop: LR schedule, autocast, backward, gradient clipping, one or more optimisers stepped in order,
  EMA, non-finite loss check, running metrics, max-steps / ``max_minutes`` stop, validation and checkpoint schedule,
  the JSON log (``OUT/log.json``), tqdm progress, device choice and DDP (``torchrun``: rank 0 validates, logs and
  writes; the stop decision is agreed across ranks);
- the resumable train state ``OUT/train_state.safetensors`` (module weights, optimiser moments, RNG states) +
  ``OUT/train_state.json`` (format 2: step, minutes, config, optimiser param groups, best value, running metrics).
  No pickle.  The format-1 states of the three trainers before this harness (VAE ``vae_train_state``, DiT flat
  ``model./ema./opt.<name>.<k>``, vocoder ``<i>.<k>`` + ``scalars``) are converted on ``--resume``: the old files
  are kept as ``train_state.format1.*`` and the run continues from their step (its RNG streams freshly seeded).

A resumed run (single process, no ``max_minutes``) draws the same crops and noise and takes the same steps as an
uninterrupted run of the same length: parameters match to the bit on CPU.
"""
from __future__ import annotations

import copy
import inspect
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from momu_live import MomuError

STATE = "train_state"
FORMAT = 2
LOG = "log.json"


@dataclass
class RunConfig:
    """What every trainer shares; ``TrainConfig`` of each trainer subclasses this with its own defaults."""
    steps: int = 1000
    batch: int = 16
    lr: float = 3e-4
    warmup: int = 100  # linear warm-up steps, then cosine to ``lr_floor * lr``
    lr_floor: float = 0.05
    betas: tuple = (0.9, 0.99)
    weight_decay: float = 0.0
    no_decay_1d: bool = False  # no weight decay on biases and norm gains (1-D parameters)
    grad_clip: float = 1.0  # max gradient norm of the main optimiser (0: none)
    ema: float = 0.0  # > 0: keep an EMA copy (decay min(ema, (1 + step) / (10 + step)))
    amp: bool = False  # bf16 autocast on CUDA
    seed: int = 0
    val_every: int = 250
    ckpt_every: int = 500
    log_every: int = 0  # > 0: also log running training metrics every N steps (besides every validation)
    max_minutes: float = 0.0  # > 0: stop (validate, checkpoint) after this much training time (summed over resumes)


def lr_at(cfg: RunConfig, step: int, minutes: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``lr_floor * lr`` over the remaining steps or over
    ``max_minutes``, whichever ends first."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    if cfg.max_minutes > 0:
        p = max(p, minutes / cfg.max_minutes)
    return cfg.lr * (cfg.lr_floor + (1 - cfg.lr_floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


# ------------------------------------------------------------------------------------------------ data


class CropSampler:
    """Random aligned crops from items of time-last arrays.

    ``items``: one tuple of arrays (..., T_k) per recording (numpy or torch); array k runs at ``rates[k]`` (default 1)
    frames per base frame (e.g. latent frames: mel 8, motion 2, latents 1), so a crop of ``length`` base frames is
    ``length * rates[k]`` frames of array k, all starting at the same time.  Items draw with probability
    proportional to their number of crop positions; without ``warp`` a crop starts on a whole base frame;
    with ``warp`` = w it covers ``length * f`` base frames (f uniform in [1 - w, 1 + w], any start) resampled
    linearly onto ``length`` (a tempo change).  ``sample(batch)`` -> one tensor (batch, ..., length * rates[k]) per
    array; the draws come from the sampler's own seeded generator (``gen``) unless one is passed.
    """

    def __init__(self, items: Sequence[Sequence], length: int, rates: Sequence[int] | None = None, warp: float = 0.0,
                 seed: int = 0, device="cpu", what: str = "item", unit: str = "frames", hint: str = "the crop length"):
        items = list(items)
        rates = rates if rates is not None else (1,) * (len(items[0]) if items else 1)
        self.length, self.rates, self.warp = int(length), tuple(int(r) for r in rates), float(warp)
        need = math.ceil(self.length * (1 + self.warp)) + 1 if self.warp > 0 else self.length
        self.items, lengths = [], []
        for arrays in items:
            if len(arrays) != len(self.rates):
                raise ValueError(f"{len(arrays)} arrays per item but {len(self.rates)} rates")
            n = min(int(a.shape[-1]) // r for a, r in zip(arrays, self.rates))
            if n >= need:
                self.items.append(tuple(torch.as_tensor(np.asarray(a, dtype=np.float32) if not torch.is_tensor(a) else a,
                                                        dtype=torch.float32, device=device) for a in arrays))
                lengths.append(n)
        if not self.items:
            raise MomuError(f"no {what} is long enough for one crop ({need} {unit}); lower {hint}")
        self.lengths = lengths
        self.weights = torch.tensor([n - need + 1 for n in lengths], dtype=torch.float64)
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, batch: int, gen: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        g = self.gen if gen is None else gen
        picks = torch.multinomial(self.weights, batch, replacement=True, generator=g).tolist()
        outs: list[list[torch.Tensor]] = [[] for _ in self.rates]
        for i in picks:
            n = self.lengths[i]
            if self.warp > 0:
                f = 1 - self.warp + 2 * self.warp * float(torch.rand((), generator=g, dtype=torch.float64))
                src = self.length * f  # base frames of source material
                start = float(torch.rand((), generator=g, dtype=torch.float64)) * (n - src - 1)
                for k, (a, r) in enumerate(zip(self.items[i], self.rates)):
                    outs[k].append(_resample(a, start * r, src * r, self.length * r))
            else:
                s = int(torch.randint(n - self.length + 1, (1,), generator=g))
                for k, (a, r) in enumerate(zip(self.items[i], self.rates)):
                    outs[k].append(a[..., s * r:(s + self.length) * r])
        return tuple(torch.stack(o) for o in outs)


def _resample(x: torch.Tensor, start: float, length: float, n_out: int) -> torch.Tensor:
    """Linear resampling of x (..., T) over [start, start + length) onto n_out frames."""
    flat = x.reshape(-1, x.shape[-1])  # (C, T)
    pos = start + torch.arange(n_out, dtype=torch.float64) * (length / n_out)  # (n_out,)
    i0 = pos.floor().long().clamp(0, flat.shape[1] - 2)
    w = (pos - i0).float()[None].to(flat.device)
    i0 = i0.to(flat.device)
    return (flat[:, i0] * (1 - w) + flat[:, i0 + 1] * w).reshape(*x.shape[:-1], n_out)


# ------------------------------------------------------------------------------------------------ device, DDP, CLI


def resolve_device(name: str = "cpu") -> str:
    """``cpu`` / ``cuda`` / ``cuda:N`` checked against this machine (MomuError when CUDA is asked but absent)."""
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise MomuError(f"--device {name} asked but CUDA is not available; use --device cpu")
    return str(name)


def run_args(args) -> dict:
    """The ``RunConfig`` fields of the flags every ``momu train`` shares (momu_live/commands ``add_run_args``);
    applies ``--threads``."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return {"seed": args.seed, "val_every": args.val_every, "ckpt_every": args.ckpt_every,
            "max_minutes": args.max_minutes}


def _distributed(device: str) -> tuple[int, int, str]:
    """(world size, rank, device) under ``torchrun`` (WORLD_SIZE > 1: the process group is initialised and
    each rank takes cuda:LOCAL_RANK), else (1, 0, device)."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1:
        return 1, 0, device
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    return ws, torch.distributed.get_rank(), device


# ------------------------------------------------------------------------------------------------ the harness


@dataclass
class StepContext:
    """What a loss function gets besides the batch: the step (0-based), the seeded CPU generator for
    augmentation/task draws, the device generator for noise, the device."""
    step: int
    gen: torch.Generator
    device_gen: torch.Generator
    device: torch.device


@dataclass
class _Opt:
    optimizer: torch.optim.Optimizer
    scheduled: bool
    clip: float


LossFn = Callable[[tuple, StepContext], Any]


class Trainer:
    """One training run in folder ``out``.  Register modules/optimisers, then ``fit``::

        h = Trainer(cfg, out, name="dit", device="cpu", resume=True)
        model = h.module("model", build(...))        # saved in the train state
        ema = h.ema(model)                            # cfg.ema > 0
        h.optimizer("model", model)                   # AdamW from cfg; more with their own names/betas
        sampler = h.sampler(items, length, rates)
        last = h.fit(sampler, loss, validate, export, best="val_loss")

    ``loss(batch, ctx)`` returns ``(loss, metrics)`` for optimiser "model", or yields ``(optimiser name, loss,
    metrics)`` in order (each is backpropagated and stepped before the generator resumes: adversarial updates).
    ``validate(step, final) -> dict | None`` (rank 0 only) is merged into the log entry; ``export(step, entry,
    is_best)`` writes the model checkpoint(s) (rank 0, before the train state).  ``h.saved_config`` is the
    ``train_config`` of the state being resumed (None for a fresh run).
    """

    def __init__(self, cfg: RunConfig, out: str | Path, name: str, device: str = "cpu", resume: bool = False,
                 progress: bool = True, desc: str | None = None, weights: str | None = None):
        self.cfg, self.name, self.desc = cfg, name, desc or name
        self.world, self.rank, dev = _distributed(resolve_device(device))
        self.device = torch.device(dev)
        self.main = self.rank == 0
        self.progress = progress and self.main
        self.weights = weights  # OUT/<weights>: the model checkpoint holding the weights a format-1 state lacks
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed + self.rank)
        np.random.seed(cfg.seed + self.rank)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1000 * self.rank + 1)
        self.device_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1000 * self.rank + 2)
        self.modules: dict[str, nn.Module] = {}
        self.opts: dict[str, _Opt] = {}
        self._ema: tuple[nn.Module, nn.Module] | None = None
        self._samplers: list[CropSampler] = []
        self.saved: dict | None = None
        if resume and (self.out / f"{STATE}.json").exists():
            self.saved = _read_json(self.out / f"{STATE}.json")

    @property
    def saved_config(self) -> dict | None:
        if self.saved is None:
            return None
        d = self.saved
        return d.get("train_config") or d.get("meta", {}).get("train_config") or d.get("config")

    # -- registration
    def module(self, name: str, module: nn.Module) -> nn.Module:
        self.modules[name] = module
        return module

    def ema(self, module: nn.Module, name: str = "ema") -> nn.Module:
        """A frozen copy of ``module`` following it by EMA (``cfg.ema``), saved in the train state."""
        ema = copy.deepcopy(module).requires_grad_(False)
        self._ema = (module, ema)
        return self.module(name, ema)

    def optimizer(self, name: str, params: nn.Module | Iterable, betas: tuple | None = None,
                  weight_decay: float | None = None, scheduled: bool = True, clip: float | None = None
                  ) -> torch.optim.Optimizer:
        """AdamW over ``params`` (a module: its trainable parameters, 1-D ones without decay when
        ``cfg.no_decay_1d``); ``scheduled``: LR from ``lr_at`` every step, else a constant ``cfg.lr``;
        ``clip``: max gradient norm (default ``cfg.grad_clip`` for "model", none otherwise)."""
        cfg = self.cfg
        wd = cfg.weight_decay if weight_decay is None else weight_decay
        if isinstance(params, nn.Module):
            named = [(n, p) for n, p in params.named_parameters() if p.requires_grad]
            if cfg.no_decay_1d:
                groups = [{"params": [p for _, p in named if p.dim() >= 2], "weight_decay": wd},
                          {"params": [p for _, p in named if p.dim() < 2], "weight_decay": 0.0}]
            else:
                groups = [{"params": [p for _, p in named], "weight_decay": wd}]
        else:
            groups = [{"params": list(params), "weight_decay": wd}]
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(betas or cfg.betas))
        if clip is None:
            clip = cfg.grad_clip if name == "model" else 0.0
        self.opts[name] = _Opt(opt, scheduled, clip)
        return opt

    def sampler(self, items, length: int, rates=None, warp: float = 0.0, **kw) -> CropSampler:
        """A ``CropSampler`` on this run's device, seeded per rank; its generator is part of the train state."""
        s = CropSampler(items, length, rates, warp, seed=self.cfg.seed + 1000 * self.rank, device=self.device, **kw)
        self._samplers.append(s)
        return s

    def wrap(self, module: nn.Module, find_unused: bool = False) -> nn.Module:
        """``module`` in DistributedDataParallel under torchrun, else itself."""
        if self.world <= 1:
            return module
        ids = [self.device] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)

    # -- the loop
    def fit(self, sampler: CropSampler, loss: LossFn, validate: Callable[[int, bool], dict | None] | None = None,
            export: Callable[[int, dict | None, bool], Any] | None = None, best: str | None = None) -> dict | None:
        """Train to ``cfg.steps`` (or the time budget); returns the last validation log entry (None if none)."""
        from tqdm import tqdm

        cfg = self.cfg
        if sampler not in self._samplers:
            self._samplers.append(sampler)
        self.step, self.minutes0, self.best, self.running, self.log = 0, 0.0, float("inf"), {}, []
        self.last_val: dict | None = None
        if self.saved is not None:
            self._resume(best)
        ctx = StepContext(self.step, self.gen, self.device_gen, self.device)
        t0 = time.time()
        minutes = lambda: self.minutes0 + (time.time() - t0) / 60  # noqa: E731
        bar = tqdm(total=cfg.steps, initial=self.step, desc=self.desc, disable=not self.progress)
        for m in self.modules.values():
            m.train()
        while self.step < cfg.steps:
            lr = lr_at(cfg, self.step, minutes())
            for o in self.opts.values():
                if o.scheduled:
                    for g in o.optimizer.param_groups:
                        g["lr"] = lr
            batch = sampler.sample(cfg.batch)
            ctx.step = self.step
            metrics = self._update(loss, batch, ctx)
            if self._ema is not None and cfg.ema > 0:
                src, ema = self._ema
                d = min(cfg.ema, (1 + self.step) / (10 + self.step))
                with torch.no_grad():
                    for pe, pm in zip(ema.parameters(), src.parameters()):
                        pe.lerp_(pm, 1 - d)
            self.step += 1
            for k, v in metrics.items():
                self.running[k] = v if k not in self.running else 0.98 * self.running[k] + 0.02 * v
            bar.update(1)
            bar.set_postfix(loss=f"{self.running.get('loss', float('nan')):.4f}")
            timeout = cfg.max_minutes > 0 and self._agree(minutes() > cfg.max_minutes)
            last = self.step >= cfg.steps or timeout
            entry, improved = None, False
            if (self.step % cfg.val_every == 0 or last) or (cfg.log_every > 0 and self.step % cfg.log_every == 0):
                entry = {"step": self.step, **self.running, "lr": lr, "minutes": round(minutes(), 4)}
            if self.main and (self.step % cfg.val_every == 0 or last):
                figures = validate(self.step, last) if validate is not None else None
                for m in self.modules.values():
                    m.train()
                entry.update(figures or {})
                self.last_val = entry
                if best is not None and best in entry and entry[best] < self.best:
                    self.best, improved = float(entry[best]), True
                if self.progress:
                    bar.write(json.dumps(entry, default=float))
            if self.main and entry is not None:
                self.log.append(entry)
            if self.step % cfg.ckpt_every == 0 or last or improved:
                self._checkpoint(export, minutes(), best)
            if timeout:
                break
        bar.close()
        if self.world > 1:
            torch.distributed.barrier()
        return self.last_val

    def _update(self, loss: LossFn, batch, ctx: StepContext) -> dict:
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp and self.device.type == "cuda")
        with amp:
            res = loss(batch, ctx)
        if not inspect.isgenerator(res):
            res = iter([("model", *res)])
        metrics: dict[str, float] = {}
        while True:
            with amp:
                item = next(res, None)
            if item is None:
                return metrics
            name, value, extra = item
            v = float(value.detach())
            if not math.isfinite(v):
                raise MomuError(f"{self.name}: the {name} loss became {v} at step {ctx.step}; lower --lr or resume "
                                "from the last checkpoint")
            o = self.opts[name]
            o.optimizer.zero_grad(set_to_none=True)
            value.backward()
            if o.clip > 0:
                params = [p for g in o.optimizer.param_groups for p in g["params"]]
                gn = float(torch.nn.utils.clip_grad_norm_(params, o.clip))
                metrics["grad_norm" if name == "model" else f"grad_norm_{name}"] = gn
            o.optimizer.step()
            if "loss" not in metrics:
                metrics["loss"] = v
            metrics.update(extra or {})

    def _agree(self, flag: bool) -> bool:
        """One stop decision for all ranks (rank clocks differ)."""
        if self.world <= 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    # -- the train state
    def _generators(self) -> dict[str, torch.Generator]:
        gens = {"gen": self.gen, "device": self.device_gen}
        gens.update({f"sampler{i}": s.gen for i, s in enumerate(self._samplers)})
        return gens

    def _checkpoint(self, export, minutes: float, best: str | None) -> None:
        if not self.main:
            return
        if export is not None:
            v = (self.last_val or {}).get(best) if best else None
            export(self.step, self.last_val, best is None or v is None or v <= self.best)
            for m in self.modules.values():
                m.train()
        tensors: dict[str, torch.Tensor] = {}
        for name, m in self.modules.items():
            tensors.update({f"module/{name}/{k}": v.detach().cpu().contiguous() for k, v in m.state_dict().items()})
        opts = {}
        for name, o in self.opts.items():
            t, opts[name] = _optimizer_flat(o.optimizer, f"opt/{name}")
            tensors.update(t)
        if self.world == 1:
            tensors.update({f"rng/{k}": g.get_state() for k, g in self._generators().items()})
            tensors["rng/torch"] = torch.get_rng_state()
            if self.device.type == "cuda":
                tensors["rng/cuda"] = torch.cuda.get_rng_state(self.device)
        doc = {"family": STATE, "format": FORMAT, "trainer": self.name, "step": self.step, "minutes": minutes,
               "best": self.best if math.isfinite(self.best) else None, "running": self.running,
               "train_config": asdict(self.cfg), "optimizers": opts}
        write_state(self.out, doc, tensors)
        _write_text(self.out / LOG, json.dumps(self.log, indent=0, default=float))

    def _resume(self, best: str | None) -> None:
        from momu_live.models.checkpoint import load_into, load_state

        doc = self.saved
        tensors = load_state(self.out / f"{STATE}.safetensors")
        if doc.get("family") != STATE:
            doc, tensors = convert_format1(doc, tensors, self.out, self.modules, {k: o.optimizer for k, o in self.opts.items()},
                                           self.weights, self.name)
            if self.main:
                for ext in ("json", "safetensors"):
                    os.replace(self.out / f"{STATE}.{ext}", self.out / f"{STATE}.format1.{ext}")
                write_state(self.out, doc, tensors)
        elif doc.get("format") != FORMAT:
            raise MomuError(f"{self.out}/{STATE}.json has format {doc.get('format')}; this version reads {FORMAT}")
        where = str(self.out / f"{STATE}.safetensors")
        for name, m in self.modules.items():
            p = f"module/{name}/"
            load_into(m, {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}, f"{where} [{name}]")
        for name, o in self.opts.items():
            if name not in doc["optimizers"]:
                raise MomuError(f"{where} holds no state of optimiser '{name}' (optimisers: {sorted(doc['optimizers'])}); "
                                "resume with the settings of that run or use another --out")
            _optimizer_load(o.optimizer, tensors, doc["optimizers"][name], f"opt/{name}")
        self.step, self.minutes0 = int(doc["step"]), float(doc.get("minutes", 0.0))
        self.running = dict(doc.get("running") or {})
        log_path = self.out / LOG
        self.log = [e for e in (json.loads(log_path.read_text()) if log_path.exists() else []) if e.get("step", 0) <= self.step]
        vals = [e for e in self.log if best is not None and best in e]
        self.best = doc["best"] if doc.get("best") is not None else min((e[best] for e in vals), default=float("inf"))
        self.last_val = self.log[-1] if self.log else None
        rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng/")}
        gens = self._generators()
        if self.world == 1 and all(k in rng for k in gens):
            for k, g in gens.items():
                g.set_state(rng[k])
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        else:  # per-rank streams (DDP) or a converted format-1 state: fresh seeds that depend on the step
            for i, g in enumerate(gens.values()):
                g.manual_seed(self.cfg.seed + 7919 * self.step + 1000 * self.rank + i)


# ------------------------------------------------------------------------------------------------ state files


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MomuError(f"{path} is not valid JSON ({exc}); resume from another run or start afresh") from None


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_state(out: Path, doc: dict, tensors: dict[str, torch.Tensor]) -> None:
    """``OUT/train_state.safetensors`` + ``.json``, each replaced atomically."""
    from safetensors.torch import save_file

    tmp = out / f"{STATE}.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, out / f"{STATE}.safetensors")
    _write_text(out / f"{STATE}.json", json.dumps(doc, default=float))


def _optimizer_flat(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, dict]:
    """An optimiser's state_dict as flat tensors ``prefix/<param id>/<key>`` + JSON (param groups, scalars)."""
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        meta["state"][str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}/{pid}/{k}"] = v.detach().cpu().contiguous()
                meta["state"][str(pid)][k] = "tensor"
            else:
                meta["state"][str(pid)][k] = v
    return tensors, meta


def _optimizer_load(opt: torch.optim.Optimizer, tensors: dict, meta: dict, prefix: str) -> None:
    state = {int(pid): {k: (tensors[f"{prefix}/{pid}/{k}"] if v == "tensor" else v) for k, v in st.items()}
             for pid, st in meta["state"].items()}
    try:
        opt.load_state_dict({"param_groups": meta["param_groups"], "state": state})
    except (ValueError, KeyError) as exc:
        raise MomuError(f"optimiser state {prefix} does not match the model ({exc}); resume with the settings of "
                        "that run or use another --out") from None


def convert_format1(doc: dict, tensors: dict, out: Path, modules: dict[str, nn.Module],
                    opts: dict[str, torch.optim.Optimizer], weights: str | None, trainer: str) -> tuple[dict, dict]:
    """A format-1 train state (written before this harness) as a format-2 (doc, tensors) for the registered
    ``modules`` / ``opts``.  VAE (``family: vae_train_state``): optimisers ``opt``/``opt_d``, discriminator
    ``disc/``, weights in ``OUT/<weights>``; DiT (JSON with ``rng``): ``model.``, ``ema.``,
    ``opt.<param name>.<key>``; vocoder (JSON with ``scalars``): ``<i>.<key>`` over the parameters in optimiser
    order, weights in ``OUT/<weights>``."""
    from momu_live.models.checkpoint import load_state

    new: dict[str, torch.Tensor] = {}
    opt_meta: dict[str, dict] = {}

    def weights_from_checkpoint():
        if weights is None:
            raise MomuError(f"{out}/{STATE}.json is a format-1 state without weights and no checkpoint to take them from")
        new.update({f"module/model/{k}": v for k, v in load_state(out / weights).items()})

    def by_index(opt: torch.optim.Optimizer, key_state: dict[int, dict[str, torch.Tensor]], name: str):
        pg = opt.state_dict()["param_groups"]
        opt_meta[name] = {"param_groups": pg, "state": {}}
        for i, st in key_state.items():
            opt_meta[name]["state"][str(i)] = {k: "tensor" for k in st}
            new.update({f"opt/{name}/{i}/{k}": v for k, v in st.items()})

    if doc.get("family") == "vae_train_state":
        meta = doc["meta"]
        step, minutes, cfg = meta["step"], 0.0, meta.get("train_config")
        weights_from_checkpoint()
        new.update({f"module/disc/{k[5:]}": v for k, v in tensors.items() if k.startswith("disc/")})
        for old, name in (("opt", "model"), ("opt_d", "disc")):
            if old in meta:
                opt_meta[name] = meta[old]
                new.update({f"opt/{name}/{k[len(old) + 1:]}": v for k, v in tensors.items() if k.startswith(old + "/")})
    elif "scalars" in doc:  # vocoder
        step, minutes, cfg = doc["step"], float(doc.get("minutes", 0.0)), doc.get("config")
        weights_from_checkpoint()
        st: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            i, key = k.split(".", 1)
            st.setdefault(int(i), {})[key] = v
        for k, v in doc["scalars"].items():
            i, key = k.split(".", 1)
            st.setdefault(int(i), {})[key] = torch.tensor(v, dtype=torch.float32)
        by_index(opts["model"], st, "model")
    elif "rng" in doc and "step" in doc:  # DiT
        step, minutes, cfg = doc["step"], 0.0, doc.get("train_config")
        for old, name in (("model.", "model"), ("ema.", "ema")):
            new.update({f"module/{name}/{k[len(old):]}": v for k, v in tensors.items() if k.startswith(old)})
        names = {id(p): n for n, p in modules["model"].named_parameters()}
        order = [names[id(p)] for g in opts["model"].param_groups for p in g["params"]]
        st = {}
        for i, n in enumerate(order):
            s = {k: tensors[f"opt.{n}.{k}"] for k in ("step", "exp_avg", "exp_avg_sq") if f"opt.{n}.{k}" in tensors}
            if s:
                st[i] = s
        by_index(opts["model"], st, "model")
    else:
        raise MomuError(f"{out}/{STATE}.json is neither a format-{FORMAT} train state nor a known format-1 one; "
                        "use another --out")
    missing = sorted(set(modules) - {k.split("/")[1] for k in new if k.startswith("module/")})
    if missing:
        raise MomuError(f"{out}/{STATE}.json (format 1) holds no weights for {missing}; resume with the settings "
                        "of that run or use another --out")
    return ({"family": STATE, "format": FORMAT, "trainer": trainer, "step": int(step), "minutes": minutes,
             "best": None, "running": {}, "train_config": cfg, "optimizers": opt_meta, "converted_from": 1}, new)
