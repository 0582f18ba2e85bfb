"""The recipe registry: every shared model is one record, and one function obtains it (docs/architecture.md, "The registry").

A :class:`Recipe` says what network (``build``), what objective, what data and what training config, per
profile, and what its weights are (``identity``, the recipe as a card records it). :func:`obtain` gets the
model for a profile, always the same way:

1. **shipped** — when the profile is one of ``recipe.shipped``: ``course_lib/weights/<name>.safetensors``,
   its sha256 checked against its card and the card's identity against ``recipe.identity(profile)`` (a file
   trained for another recipe is refused, never used). The ``gpu`` profile loads the ``cpu`` weights where
   those ship and its own do not (:func:`shipped_profile`): the course's shipped networks were trained for
   hours on a CPU, and retraining them at ``gpu`` size would take a Colab T4 20–30 minutes a chapter
   (README, "The gpu profile"); ``retrain=True`` still trains the ``gpu`` recipe;
2. else **the cached run** in ``runs/<run name>``: :func:`course_lib.training.train` resumes it after
   verifying it (sha256, model, recipe, data); a finished run trains nothing;
3. else it **trains** — the same call, with its progress bar, checkpoints and exact resume.

One card format, beside shipped weights (``<name>.json``) and in a run directory (``card.json``)::

    {"sha256": <of the weights>, "identity": <the recipe>, "info": <how it was trained: seconds, steps,
     losses, …>, "scores": <what was measured on it>}

so the measured figures live in the card, where guards, tests and docstrings read them (:func:`card`).
:func:`write_shipped` is the one writer of shipped weights (float16, the card beside them): the scripts
``benchmarks/train_*.py`` call it, and ``python -m course_lib.registry write <name>`` trains and writes any
record. Adding a model to the course = adding a record (docs/architecture.md, "How to add a model").
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import torch
from torch import nn

from .checkpoints import (
    CheckpointError, atomic_save_tensors, atomic_write_text, has_checkpoint, load_tensors, read_card,
    read_state,
)
from .settings import WEIGHTS_DIR, Profile, check_bool, gpu_dryrun, resolve_device, resolve_profile, runs_dir
from .optim import config_identity
from .training import Callback, TrainConfig, limits, run_identity, train

PROFILES: tuple[str, ...] = ("smoke", "cpu", "gpu")
CARD_FILE = "card.json"  # a run directory's card


class Stage(NamedTuple):
    """One training run of a recipe: an objective (a NoiseSchedule or an Objective) and its config. A recipe
    trains its stages one after another, each continuing from the weights the last one left (chapter 11's
    autoencoder: an L1 phase, then a squared-error one, each with a fresh optimizer)."""

    objective: Any
    config: TrainConfig


@dataclass(frozen=True)
class Recipe:
    """One shared model. Every callable takes the resolved profile (``"smoke"``, ``"cpu"`` or ``"gpu"``).

    - ``name``: the shipped files ``course_lib/weights/<name>.*`` and, by default, the run ``runs/<name>-<profile>``.
    - ``build``: a fresh network (:func:`obtain` seeds torch with the first stage's seed first: the initial
      weights are part of the recipe).
    - ``objective`` / ``train_config``: one stage; or ``stages`` for several (:class:`Stage`).
    - ``data``: the training examples, a tensor or ``(examples, conditions)``.
    - ``identity``: the recipe as a shipped card must hold it; default: the run's identity
      (:func:`course_lib.training.run_identity`: network, config, objective, data fingerprints).
    - ``shipped``: the profiles whose weights ship; ``frozen``: a measuring network (no gradients); ``half``:
      shipped as float16 (default; the measuring networks ship float32, the bytes their figures were measured with).
    - ``init``: the weights training starts from (a state dict), when not the seeded ``build``'s: chapter 12's
      reflow starts from the base flow's EMA weights.
    - ``until``: stop the run at this step of its recipe (chapter 09's race reads chapter 04's run there).
    - ``callbacks``: extra callbacks for the run, given ``(profile, run_dir)``.
    - ``extras``: figures computed once from the trained model (e.g. a latent scale factor), kept in the run's
      card and a shipped card's ``info``; ``card_info``: the info keys a shipped card keeps (``loss_every``:
      every how many losses); ``ema``: obtain the EMA weights (default) or the raw ones.
    - ``script``: the command that writes the shipped files; ``chapter``: where the course teaches it.
    """

    name: str
    build: Callable[[str], nn.Module]
    objective: Callable[[str], Any] | None = None
    train_config: Callable[[str], TrainConfig] | None = None
    data: Callable[[str], Any] | None = None
    stages: Callable[[str], Sequence[Stage]] | None = None
    identity: Callable[[str], dict[str, Any]] | None = None
    shipped: tuple[str, ...] = ()
    frozen: bool = False
    half: bool = True
    run_name: Callable[[str], str] | None = None
    init: Callable[[str], dict[str, torch.Tensor]] | None = None
    until: Callable[[str], int] | None = None
    callbacks: Callable[[str, Path], Sequence[Callback]] | None = None
    extras: Callable[[nn.Module, str], dict[str, Any]] | None = None
    card_info: tuple[str, ...] = ("train_seconds", "steps", "train_config", "profile", "losses")
    loss_every: int = 1
    ema: bool = True
    script: str = ""
    chapter: str = ""

    def __post_init__(self) -> None:
        trains = self.stages is not None or (self.objective is not None and self.train_config is not None)
        if trains and self.data is None:
            raise ValueError(f"recipe {self.name!r}: a recipe that trains needs data")
        if not trains and not self.shipped:
            raise ValueError(f"recipe {self.name!r} neither trains (objective + train_config, or stages) nor ships")
        if self.identity is None and not trains:
            raise ValueError(f"recipe {self.name!r} ships only: give its identity")

    def stages_for(self, profile: str) -> list[Stage]:
        """The recipe's training runs for ``profile``, in order."""
        if self.stages is not None:
            return list(self.stages(profile))
        if self.objective is None or self.train_config is None:
            raise CheckpointError(f"{self.name!r} is not trained by the course; its weights ship ({self.hint})")
        return [Stage(self.objective(profile), self.train_config(profile))]

    def identity_for(self, profile: str) -> dict[str, Any]:
        """What a shipped card of this recipe must hold, as JSON stores it (tuples become lists)."""
        if self.identity is not None:
            ident = self.identity(profile)
        else:  # the run's identity: the network, the (last) stage's config and objective, the data
            stage, (images, conds) = self.stages_for(profile)[-1], _split(self.data(profile))
            ident = run_identity(self.build(profile), stage.objective, images, conds, stage.config)
        return json.loads(json.dumps(ident))

    def run_dir(self, profile: str) -> Path:
        """``runs/<run name>``: where the course caches this recipe's run for ``profile``."""
        return runs_dir() / (self.run_name(profile) if self.run_name is not None else f"{self.name}-{profile}")

    @property
    def hint(self) -> str:
        how = f"rerun `{self.script}`" if self.script else f"run `python -m course_lib.registry write {self.name}`"
        return f"{how}, or pass retrain=True to train it here"


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to :data:`RECIPES` (one record per name; the same record again is fine) and return it."""
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a course_lib.registry.Recipe, got {type(recipe).__name__}")
    known = RECIPES.get(recipe.name)
    if known is not None and known is not recipe:
        raise ValueError(f"a recipe named {recipe.name!r} is already registered (chapter {known.chapter})")
    RECIPES[recipe.name] = recipe
    return recipe


def _split(data: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    return (data[0], data[1]) if isinstance(data, (tuple, list)) else (data, None)


def _recipe(recipe: Recipe | str) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be a Recipe or one of the registered names {sorted(RECIPES)}, got {recipe!r}")
    return RECIPES[recipe]


# ----------------------------------------------------------------------------- cards and shipped weights
def shipped_paths(name: str, weights_dir: Path = WEIGHTS_DIR) -> tuple[Path, Path]:
    """``(weights, card)`` of the shipped network ``name``."""
    return Path(weights_dir) / f"{name}.safetensors", Path(weights_dir) / f"{name}.json"


def card(recipe: Recipe | str, *, weights_dir: str | os.PathLike = WEIGHTS_DIR) -> dict[str, Any]:
    """The shipped card of ``recipe``: ``{"sha256", "identity", "info", "scores"}`` (WeightsNotFound if none ships)."""
    return read_card(shipped_paths(_recipe(recipe).name, Path(weights_dir))[1])


def load_shipped(recipe: Recipe, model: nn.Module, profile: str, *, weights: str | os.PathLike | None = None,
                 sha256: str | None = None, weights_dir: str | os.PathLike = WEIGHTS_DIR) -> tuple[nn.Module, dict[str, Any]]:
    """The one loader of shipped weights: ``model`` with ``recipe``'s file, after checking the card's identity
    against the recipe and the file's sha256 against the card (or ``sha256``). Returns ``(model, card)``.

    ``weights`` reads another file in place of the shipped one (checked all the same): tests use it. A gpu dry
    run (``make gpu-dryrun``) checks the sha256 only: it caps every step count and data size, so the identity it
    would compute is not the recipe's (the registry's tests compare every shipped card's identity)."""
    path, card_path = shipped_paths(recipe.name, Path(weights_dir))
    held = read_card(card_path)
    wanted = None if gpu_dryrun() else recipe.identity_for(profile)  # a dry run caps every step count and data size:
    if wanted is not None and held.get("identity") != wanted:  # its identity is not the recipe's (the sha256 still is)
        raise CheckpointError(f"{path} was trained for another recipe ({held.get('identity')}), not the one asked for "
                              f"({wanted}); {recipe.hint}")
    tensors = load_tensors(path if weights is None else weights, sha256=sha256 or held["sha256"], hint=recipe.hint)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    return model.eval(), held


def write_shipped(recipe: Recipe | str, model: nn.Module, info: dict[str, Any], scores: dict[str, Any] | None = None,
                  *, profile: Profile = "cpu", weights_dir: str | os.PathLike = WEIGHTS_DIR) -> str:
    """The one writer of shipped weights: ``model``'s (float16 unless ``recipe.half`` is False) and its card, atomically, weights first.

    The card keeps ``recipe.card_info`` of ``info`` (every ``loss_every``-th loss, rounded to 4 decimals), the
    file's size and the thread count, ``scores`` as given, and the recipe's identity. Returns the sha256 (the same weights always
    give the same bytes)."""
    recipe, prof = _recipe(recipe), resolve_profile(profile)
    path, card_path = shipped_paths(recipe.name, Path(weights_dir))
    tensors = {k: (v.half() if v.is_floating_point() and recipe.half else v) for k, v in model.state_dict().items()}
    digest = atomic_save_tensors(path, tensors)
    kept = {k: info[k] for k in recipe.card_info if k in info}
    if "losses" in kept:
        kept["losses"] = [round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v]
                          for v in kept["losses"][::recipe.loss_every]]
        if recipe.loss_every > 1:
            kept["loss_every"] = recipe.loss_every
    kept.update(size_bytes=path.stat().st_size, threads=torch.get_num_threads())
    body = {"sha256": digest, "identity": recipe.identity_for(prof), "info": kept,
            "scores": scores or {}}
    atomic_write_text(card_path, json.dumps(body, indent=1, sort_keys=True))
    return digest


# ----------------------------------------------------------------------------- cached runs
def _stage_dirs(run_dir: Path, n: int) -> list[Path]:
    """Where each stage's checkpoint lives: the run directory itself for one stage, ``stage-<k>`` inside it for several."""
    return [run_dir] if n == 1 else [run_dir / f"stage-{k + 1}" for k in range(n)]


def _steps_done(run_dir: Path) -> int | None:
    """The committed step of ``run_dir``'s checkpoint; None when there is none or an older course version wrote it
    (no optimizer state or run identity: it is trained afresh)."""
    if not has_checkpoint(run_dir):
        return None
    state = read_state(run_dir)
    return int(state["step"]) if {"optimizer_param_groups", "model", "train_config"} <= set(state) else None


def _run_card(run_dir: Path, digest: str) -> dict[str, Any]:
    """``run_dir/card.json`` when it belongs to the checkpoint whose weights have sha256 ``digest``, else a blank card."""
    path = run_dir / CARD_FILE
    held = read_card(path) if path.is_file() else {}
    return held if held.get("sha256") == digest else {"sha256": digest, "identity": {}, "info": {}, "scores": {}}


def _final_digest(run_dir: Path) -> tuple[Path, str]:
    dirs = sorted(run_dir.glob("stage-*"), key=lambda d: int(d.name.split("-")[1])) or [run_dir]
    return dirs[-1], read_state(dirs[-1])["sha256"]


def card_scores(run_dir: str | os.PathLike, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Scores measured on the cached run in ``run_dir``, kept in its card (by the checkpoint's sha256): read them,
    else ``compute()`` and store them."""
    run_dir = Path(run_dir)
    held = _run_card(run_dir, _final_digest(run_dir)[1])
    if held.get("scores"):
        return held["scores"]
    held["scores"] = compute()
    atomic_write_text(run_dir / CARD_FILE, json.dumps(held, sort_keys=True))
    return held["scores"]


def _extras(recipe: Recipe, model: nn.Module, prof: str, run_dir: Path) -> dict[str, Any]:
    """``recipe.extras`` of the trained model, computed once and kept in the run's card."""
    if recipe.extras is None:
        return {}
    held = _run_card(run_dir, _final_digest(run_dir)[1])
    if "extras" not in held["info"]:
        held["info"]["extras"] = recipe.extras(model, prof)
        held["identity"] = {"recipe": recipe.name, "profile": prof}
        atomic_write_text(run_dir / CARD_FILE, json.dumps(held, sort_keys=True))
    return held["info"]["extras"]


def _train_stages(recipe: Recipe, prof: str, run_dir: Path, *, retrain: bool, device: torch.device, progress: bool,
                  callback: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Train (or resume, or load) every stage of ``recipe`` in ``run_dir``; returns ``(model, info)``."""
    stages, data = recipe.stages_for(prof), recipe.data(prof)
    dirs = _stage_dirs(run_dir, len(stages))
    until = recipe.until(prof) if recipe.until is not None else None
    done = [_steps_done(d) for d in dirs]
    fresh = retrain or any(n is None and has_checkpoint(d) for n, d in zip(done, dirs))  # an older version's run
    targets = [min(s.config.steps, until) if until else s.config.steps for s in stages]
    cached = not fresh and all(n is not None and n >= t for n, t in zip(done, targets))
    extra = [callback] if callable(callback) else list(callback or [])
    torch.manual_seed(stages[0].config.seed)  # the initial weights are part of the recipe
    model, results = recipe.build(prof), []
    if recipe.init is not None:
        model.load_state_dict(recipe.init(prof))
    with limits(until=until):
        for k, (stage, where) in enumerate(zip(stages, dirs)):
            last = k == len(stages) - 1
            cbs = [*(recipe.callbacks(prof, run_dir) if recipe.callbacks is not None and last else ()), *(extra if last else ())]
            result = train(model, stage.objective, data, stage.config, run_dir=where, resume=not fresh,
                           device=device, progress=progress, callback=cbs or None)
            model = result.model
            results.append(result)
    out = results[-1].ema_model if recipe.ema else results[-1].model
    config = getattr(out, "config", None)
    info = {"train_seconds": sum(r.seconds for r in results), "steps": sum(r.steps for r in results),
            "losses": [v for r in results for v in r.losses], "config": config.to_dict() if hasattr(config, "to_dict") else None,
            "train_config": run_identity_config(stages), "profile": prof, "run_dir": str(run_dir), "cached": cached,
            "shipped": False, "sha256": read_state(dirs[-1])["sha256"] if has_checkpoint(dirs[-1]) else None}
    return out, {**info, **_extras(recipe, out, prof, run_dir)}


def run_identity_config(stages: Sequence[Stage]) -> Any:
    """The training config(s) an info dict reports: one stage's as a dict, several as a list."""
    configs = [config_identity(s.config) for s in stages]
    return configs[0] if len(configs) == 1 else configs


# ----------------------------------------------------------------------------- the one function
_GPU_RECIPES_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("course_lib_gpu_recipes_only", default=False)


@contextlib.contextmanager
def gpu_recipes_only(profile: str = "gpu") -> Iterator[None]:
    """Within it, a ``gpu`` model is never the ``cpu`` weights standing in (:func:`shipped_profile`): what a ``gpu``
    training run and everything it reads (its data, its starting weights: another record's model) must use, so that
    a network retrained at ``gpu`` size starts from and learns on ``gpu``-size ones. :func:`obtain` enters it
    whenever it trains or resumes a ``gpu`` run; so do chapter 15's loaders where they fetch a teacher or a student
    outside it (``pretrained.onestep``; chapter 12's reflow trains its base flow in a run directory of its own).
    Nothing changes for another ``profile``."""
    token = _GPU_RECIPES_ONLY.set(True) if profile == "gpu" else None
    try:
        yield
    finally:
        if token is not None:
            _GPU_RECIPES_ONLY.reset(token)


def shipped_profile(recipe: Recipe, profile: str) -> str | None:
    """The profile whose shipped weights :func:`obtain` loads for ``profile`` (a resolved one), or None when it
    trains (or reads its cached run): ``profile`` itself when its weights ship; for ``gpu``, else ``cpu``'s when
    those ship (a learner on a GPU gets the course's trained networks in seconds and spends the GPU on sampling;
    ``retrain=True`` trains the ``gpu`` recipe, inside :func:`gpu_recipes_only`)."""
    if profile in recipe.shipped:
        return profile
    if profile == "gpu" and "cpu" in recipe.shipped and not _GPU_RECIPES_ONLY.get():
        return "cpu"
    return None


def obtain(recipe: Recipe | str, profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None,
           retrain: bool = False, device: str | torch.device | None = None, progress: bool = True,
           callback: Callback | Sequence[Callback] | None = None,
           weights_dir: str | os.PathLike = WEIGHTS_DIR) -> tuple[nn.Module, dict[str, Any]]:
    """The model of ``recipe`` (a :class:`Recipe` or a registered name) for ``profile``, and its info: shipped
    weights (sha256 and recipe checked), else the cached run, else trained — see the module docstring.

    ``retrain=True`` or a ``run_dir`` trains (or resumes) instead of loading shipped weights; ``retrain=True``
    starts afresh over a cached run. Returns ``(model, info)``: the EMA weights (unless the recipe says
    otherwise) in eval mode on ``device``; info holds ``train_seconds``, ``steps``, ``losses``, ``config``,
    ``train_config``, ``profile``, ``run_dir``, ``cached`` (nothing was trained), ``shipped`` and the recipe's
    extras; a shipped model's info is its card's ``info`` plus ``sha256`` (``run_dir`` None).
    Raises CheckpointError naming the file and what to do when a shipped file or a cached run does not verify.
    """
    recipe = _recipe(recipe)
    check_bool("retrain", retrain)
    check_bool("progress", progress)
    prof, dev = resolve_profile(profile), resolve_device(device)
    ships = shipped_profile(recipe, prof)
    if ships is not None and run_dir is None and not retrain:
        model, held = load_shipped(recipe, recipe.build(ships), ships, weights_dir=weights_dir)
        model = model.requires_grad_(not recipe.frozen).to(dev)
        return model, {**held["info"], "cached": True, "shipped": True, "run_dir": None, "sha256": held["sha256"]}
    run_dir = Path(run_dir) if run_dir is not None else recipe.run_dir(prof)
    with gpu_recipes_only(prof):  # a gpu run's data and starting weights come from gpu-size models
        model, info = _train_stages(recipe, prof, run_dir, retrain=retrain, device=dev, progress=progress, callback=callback)
    return (model.eval().requires_grad_(False) if recipe.frozen else model.eval()), info


# ----------------------------------------------------------------------------- python -m course_lib.registry
#: the modules whose import registers the course's records (imported by name here: the registry sits below them)
RECORD_MODULES: tuple[str, ...] = ("course_lib.models.classifier", "course_lib.models.attributes",
                                   "course_lib.models.scene_judge", "course_lib.pretrained", "course_lib.latent",
                                   "course_lib.caption_models", "course_lib.painters", "course_lib.clip",
                                   "course_lib.clip_conditioning", "course_lib.unclip")


def load_all_records() -> dict[str, Recipe]:
    """Import every module of :data:`RECORD_MODULES` (registering their records) and return :data:`RECIPES`."""
    import importlib

    for module in RECORD_MODULES:
        importlib.import_module(module)
    return RECIPES


def main(argv: Sequence[str] | None = None) -> int:
    """``list``: every record, where it is taught and which profiles ship; ``write NAME``: train NAME for a profile
    (resuming its cached run) and write its shipped weights and card with :func:`write_shipped`."""
    parser = argparse.ArgumentParser(prog="python -m course_lib.registry", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list")
    write = sub.add_parser("write")
    write.add_argument("name")
    write.add_argument("--profile", default="cpu", choices=PROFILES)
    write.add_argument("--out-dir", type=Path, default=Path("build/weights"),
                       help="where to write (default build/weights; course_lib/weights replaces the shipped files)")
    write.add_argument("--scores-json", type=Path, help="a JSON object of measured scores to keep in the card")
    args = parser.parse_args(argv)
    records = load_all_records()
    if args.command == "list":
        for name, r in sorted(records.items()):
            print(f"{name:24s} chapter {r.chapter or '-':4s} ships {','.join(r.shipped) or '-':14s} {r.script}")
        return 0
    recipe = _recipe(args.name)
    tic = time.perf_counter()
    model, info = obtain(recipe, args.profile, run_dir=recipe.run_dir(args.profile))
    scores = json.loads(args.scores_json.read_text()) if args.scores_json else {}
    digest = write_shipped(recipe, model, info, scores, profile=args.profile, weights_dir=args.out_dir)
    print(f"{args.name}: wrote {shipped_paths(recipe.name, args.out_dir)[0]} (sha256 {digest[:12]}…) "
          f"after {time.perf_counter() - tic:.0f} s ({info['steps']} steps, cached={info['cached']})")
    return 0


if __name__ == "__main__":  # run the imported module's main, whose RECIPES the record modules fill
    from course_lib.registry import main as _main

    raise SystemExit(_main())


__all__ = ["CARD_FILE", "RECIPES", "RECORD_MODULES", "Recipe", "Stage", "card", "card_scores", "load_all_records",
           "gpu_recipes_only", "load_shipped", "obtain", "register", "shipped_paths", "shipped_profile",
           "write_shipped"]
