"""One training step of a group: the stacked model, its optimiser and data, the step itself, and the step
recorded once in a CUDA graph and replayed.

On a GPU the models of this study are too small to keep it busy: eagerly, a step is thousands of kernel launches
that the host issues one by one, and the GPU idles between them (results/benchmarks/gpu_steps.jsonl). So the part
of a step that does not depend on its number (`update`: loss, gradient, clipping, optimiser) is recorded once
in a CUDA graph (`StepGraph`) and replayed with one launch; what varies between steps lives in tensors the
graph reads (the warm-up factor and the members' rates, the batch copied into fixed buffers, the noise drawn
from generators registered with the graph). On the CPU there is no graph: the same eager step runs.
"""

from __future__ import annotations

import dataclasses

import torch

from replicate.config import TrainConfig
from replicate.errors import ConfigError
from replicate.training.data import ClipStream
from replicate.training.diffusion import alphas_cumprod, training_loss
from replicate.training.ensemble import MemberAdamW, MemberBuffers, stack
from replicate.training.ensemble_reference import EnsembleAdamW
from replicate.training.model import VideoDiT


def build_model(cfg: TrainConfig, device: torch.device, backend: str = "auto") -> VideoDiT:
    """The run's model, initialised from its seed without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = VideoDiT(cfg.model, backend=backend)
    return model.to(device)


def check_group(cfgs: list[TrainConfig]) -> TrainConfig:
    """The shared config of runs that may train as one ensemble: identical but for learning rate and seed."""
    if not cfgs:
        raise ConfigError("an ensemble needs at least one run")
    base = cfgs[0]
    if any(dataclasses.replace(c, lr=base.lr, seed=base.seed) != base for c in cfgs):
        raise ConfigError("runs of one ensemble must differ only in learning rate and seed")
    return base


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return dev


Optimizer = MemberAdamW | EnsembleAdamW


def make_optimizer(model: torch.nn.Module, cfgs: list[TrainConfig], reference: bool = False) -> Optimizer:
    """AdamW with each member's learning rate, for a model stacked len(cfgs) times: MemberAdamW over the model's
    parameters laid into MemberBuffers, or with `reference` the per-member EnsembleAdamW (the baseline)."""
    base = check_group(cfgs)
    lrs = torch.tensor([c.lr for c in cfgs])
    hyper = {"betas": base.betas, "eps": base.adam_eps, "weight_decay": base.weight_decay}
    if reference:
        return EnsembleAdamW(model.parameters(), lrs, **hyper)
    return MemberAdamW(MemberBuffers(model.parameters()), lrs, **hyper)


Batch = tuple[torch.Tensor, torch.Tensor]  # clips (B, C, F, H, W) and labels (B,)


def warmup_scale(step: int, cfg: TrainConfig) -> float:
    """The factor on the peak rates at step `step` (from 1): linear warm-up over cfg.warmup_steps, then 1."""
    return min(1.0, step / max(cfg.warmup_steps, 1))


def update(
    model: torch.nn.Module,
    opt: Optimizer,
    batches: list[Batch],
    gens: list[torch.Generator],
    sources: list[int],
    abar: torch.Tensor,
    cfg: TrainConfig,
    active: torch.Tensor,
) -> torch.Tensor:
    """What a step does whatever its number (StepGraph records it in a CUDA graph), member e on batches[sources[e]]
    (one batch per seed, see diffusion.training_loss): the loss (fp32, or bf16 autocast on CUDA where cfg.bf16,
    its weight cache off as capture requires), its gradient (none for members not `active`: diverged),
    per-member clipping and the optimiser's update. Returns the losses (E,) on device.
    """
    bf16 = cfg.bf16 and batches[0][0].device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
        losses = training_loss(model, batches, gens, abar, cfg.label_dropout, sources)
    opt.zero_grad()
    torch.where(active, losses, 0.0).sum().backward()
    opt.clip_grad_norm_(cfg.grad_clip)
    opt.step()
    return losses.detach()


class StepGraph:
    """`update` of a group recorded once in a CUDA graph, then replayed: its inputs are copied into fixed
    buffers, its noise comes from the group's generators (registered with the graph, so each replay draws
    fresh noise as an eager step would), and the warm-up factor and the rates are read from the optimiser's
    tensors. Recording needs the optimiser's state to exist and the kernels to be compiled: the stepper takes
    its first `WARM_STEPS` steps eagerly on a side stream (as torch's CUDA-graph notes advise) before it records.
    """

    WARM_STEPS = 3

    def __init__(self, stepper: GroupStepper, batches: list[Batch]) -> None:
        self.inputs = [(x.clone(), y.clone()) for x, y in batches]
        self.graph = torch.cuda.CUDAGraph()
        for gen in stepper.gens:
            self.graph.register_generator_state(gen)
        with torch.cuda.graph(self.graph):
            self.losses = update(
                stepper.model,
                stepper.opt,
                self.inputs,
                stepper.gens,
                stepper.sources,
                stepper.abar,
                stepper.cfg,
                stepper.active,
            )  # recorded, not run

    def replay(self, batches: list[Batch]) -> torch.Tensor:
        """One step on `batches`: the members' losses (E,), a copy (the next replay overwrites the graph's)."""
        for (x, y), (x_in, y_in) in zip(batches, self.inputs, strict=True):
            x_in.copy_(x)
            y_in.copy_(y)
        self.graph.replay()
        return self.losses.clone()


class GroupStepper:
    """What a training step of a group needs: its stacked model (and a plain model of its architecture),
    optimiser, and per seed a noise generator and a clip stream, and the divergence mask. The trainer and the
    step benchmarks share it. Members of one seed share their initialisation, clips and noise. `reference`:
    the per-member optimiser (replicate.training.ensemble_reference) instead of the flat one, for tests and benchmarks.
    """

    def __init__(
        self,
        cfgs: list[TrainConfig],
        device: torch.device,
        backend: str = "auto",
        capture: bool = False,
        reference: bool = False,
    ) -> None:
        self.cfg = check_group(cfgs)
        self.seeds = list(dict.fromkeys(c.seed for c in cfgs))  # in order of first appearance
        self.sources = [self.seeds.index(c.seed) for c in cfgs]
        plains = [build_model(dataclasses.replace(self.cfg, seed=seed), device, backend) for seed in self.seeds]
        self.plain = plains[0]
        self.model = stack([plains[k] for k in self.sources])
        self.opt = make_optimizer(self.model, cfgs, reference)
        self.buffers = self.opt.buffers if isinstance(self.opt, MemberAdamW) else None  # the EMA reads them
        self.gens = [torch.Generator(device=device).manual_seed(seed) for seed in self.seeds]
        self.abar = alphas_cumprod().to(device)
        self.active = torch.ones(len(cfgs), dtype=torch.bool, device=device)
        self.device = device
        self.capture = capture and device.type == "cuda"  # a CPU has no graphs: it runs the eager step
        self.graph: StepGraph | None = None
        self.eager_steps = 0  # steps taken eagerly since this stepper was built (before a capture: warm-up)
        self.seek(0)

    @property
    def warm_steps(self) -> int:
        """The steps before a steady one: eager warm-up, recording and a first replay when it captures."""
        return StepGraph.WARM_STEPS + 1 if self.capture else 1

    def seek(self, steps: int) -> None:
        """Point the clip streams at the batch of step `steps` + 1 (clips are pure functions of their index)."""
        self.streams = [
            ClipStream(self.cfg.model.clip, seed, "train", self.device, start=steps * self.cfg.batch_clips)
            for seed in self.seeds
        ]

    def next_batches(self) -> list[Batch]:
        """Each seed's next batch."""
        return [stream.next(self.cfg.batch_clips) for stream in self.streams]

    def step(
        self, step: int, batches: list[Batch] | None = None, forward: torch.nn.Module | None = None
    ) -> torch.Tensor:
        """Step number `step` (from 1) on `batches` (default: the streams' next): the warm-up factor of that step,
        set on the host, then `update`, through `forward` (default: the
        stacked model; e.g. a compiled one), replayed from a StepGraph when the stepper captures. Returns the
        members' losses (E,) on the device."""
        batches = batches if batches is not None else self.next_batches()
        if self.capture and forward is None:
            return self._captured(step, batches)
        return self._eager(step, batches, forward if forward is not None else self.model)

    def _eager(self, step: int, batches: list[Batch], forward: torch.nn.Module) -> torch.Tensor:
        self.eager_steps += 1
        self.opt.set_scale(warmup_scale(step, self.cfg))
        return update(forward, self.opt, batches, self.gens, self.sources, self.abar, self.cfg, self.active)

    def _captured(self, step: int, batches: list[Batch]) -> torch.Tensor:
        if self.graph is None and self.eager_steps < StepGraph.WARM_STEPS:
            main, side = torch.cuda.current_stream(self.device), torch.cuda.Stream(self.device)
            side.wait_stream(main)
            with torch.cuda.stream(side):
                losses = self._eager(step, batches, self.model)
            main.wait_stream(side)
            return losses
        if self.graph is None:
            torch.cuda.synchronize(self.device)
            self.graph = StepGraph(self, batches)
        self.opt.set_scale(warmup_scale(step, self.cfg))
        return self.graph.replay(batches)
