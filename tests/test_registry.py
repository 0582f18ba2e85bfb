"""The recipe registry (course_lib.registry; docs/architecture.md, "The registry"): one record per model, one
function that obtains it — shipped weights, else the cached run, else training — and one card format."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from course_lib.checkpoints import CheckpointError, WeightsNotFound, has_checkpoint, read_state
from course_lib.optim import LATER_FIELDS, TrainConfig, config_identity, lr_at
from course_lib.registry import (
    RECIPES, Recipe, Stage, card, card_scores, load_all_records, load_shipped, main, obtain, register, shipped_profile,
    write_shipped,
)
from course_lib.schedules import make_schedule


class Affine(torch.nn.Module):
    """A tiny denoiser: model(x_t, t) = W x_t + b (no config: its signature is its parameter shapes)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, t, cond=None):
        return self.lin(x)


class Wider(Affine):
    """Another size of :class:`Affine` (a hidden layer of 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 4))


def _data(profile: str) -> torch.Tensor:
    return torch.randn(32, 4, generator=torch.Generator().manual_seed(1))


def _tiny(**changes) -> Recipe:
    base = Recipe(name="tiny", build=lambda p: Affine(), objective=lambda p: make_schedule("linear", 50),
                  train_config=lambda p: TrainConfig(steps=6, batch_size=8, warmup=1, checkpoint_every=2),
                  data=_data, shipped=("cpu",))
    return replace(base, **changes)


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_obtain_trains_once_then_loads_the_cached_run(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    first, info = obtain(_tiny(), "smoke", progress=False)
    assert not info["cached"] and not info["shipped"] and info["steps"] == 6 and len(info["losses"]) == 6
    assert info["run_dir"] == str(tmp_path / "tiny-smoke") and info["sha256"] == read_state(tmp_path / "tiny-smoke")["sha256"]
    again, info2 = obtain(_tiny(), "smoke", progress=False)
    assert info2["cached"] and _equal(first, again) and not again.training
    retrained, info3 = obtain(_tiny(), "smoke", progress=False, retrain=True)
    assert not info3["cached"] and _equal(first, retrained)  # the seeded recipe gives the same weights bit for bit


def test_obtain_refuses_a_cached_run_of_another_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    obtain(_tiny(), "smoke", progress=False)
    other = _tiny(train_config=lambda p: TrainConfig(steps=6, batch_size=8, warmup=1, checkpoint_every=2, lr=5e-4))
    with pytest.raises(CheckpointError, match="different training config"):
        obtain(other, "smoke", progress=False)


def test_shipped_weights_round_trip_in_one_card_format_and_refuse_another_recipe_or_changed_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("COURSE_PROFILE", raising=False)  # the tests' smoke default would win over "cpu"
    recipe = _tiny(card_info=("steps", "losses"), loss_every=2)
    model, info = obtain(recipe, "smoke", progress=False)
    digest = write_shipped(recipe, model, info, {"score": 0.5}, profile="cpu", weights_dir=tmp_path)
    held = card(recipe, weights_dir=tmp_path)
    assert set(held) == {"sha256", "identity", "info", "scores"} and held["sha256"] == digest
    assert held["scores"] == {"score": 0.5} and held["info"]["steps"] == 6 and len(held["info"]["losses"]) == 3
    assert held["info"]["loss_every"] == 2 and held["identity"] == recipe.identity_for("cpu")
    assert write_shipped(recipe, model, info, {"score": 0.5}, profile="cpu", weights_dir=tmp_path) == digest  # same bytes
    shipped, sinfo = obtain(recipe, "cpu", weights_dir=tmp_path)
    assert sinfo["shipped"] and sinfo["cached"] and sinfo["run_dir"] is None and sinfo["sha256"] == digest
    assert torch.allclose(shipped.lin.weight, model.lin.weight, atol=1e-3) and shipped.lin.weight.dtype == torch.float32
    with pytest.raises(CheckpointError, match="another recipe"):  # the smoke recipe's data differ from the cpu one's card
        load_shipped(replace(recipe, data=lambda p: _data(p) * 2), Affine(), "cpu", weights_dir=tmp_path)
    weights = tmp_path / "tiny.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        obtain(recipe, "cpu", weights_dir=tmp_path)
    with pytest.raises(WeightsNotFound):
        obtain(replace(recipe, name="missing"), "cpu", weights_dir=tmp_path)


def test_the_gpu_profile_loads_the_cpu_weights_where_only_those_ship(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.delenv("COURSE_GPU_DRYRUN", raising=False)
    assert [shipped_profile(_tiny(shipped=s), p) for s, p in [(("cpu",), "gpu"), (("cpu",), "cpu"), (("cpu",), "smoke"),
            (("gpu", "cpu"), "gpu"), ((), "gpu")]] == ["cpu", "cpu", None, "gpu", None]
    recipe = _tiny(build=lambda p: Wider() if p == "gpu" else Affine())  # the gpu recipe: another network
    model, info = obtain(recipe, "smoke", progress=False)
    write_shipped(recipe, model, info, profile="cpu", weights_dir=tmp_path)
    loaded, held = obtain(recipe, "gpu", weights_dir=tmp_path)  # the cpu network and its checked weights
    assert held["shipped"] and isinstance(loaded, Affine) and torch.allclose(loaded.lin.weight, model.lin.weight, atol=1e-3)
    trained, tinfo = obtain(recipe, "gpu", weights_dir=tmp_path, retrain=True, progress=False)  # retrain: the gpu recipe
    assert not tinfo["shipped"] and isinstance(trained, Wider)
    child = _tiny(name="tiny_child", build=recipe.build, init=lambda p: obtain(recipe, p, progress=False)[0].state_dict())
    grown, _ = obtain(child, "gpu", retrain=True, progress=False)  # its start: the gpu-size base, trained, not cpu's
    assert isinstance(grown, Wider)


def test_stages_run_in_turn_and_a_killed_stage_resumes_bit_for_bit(tmp_path, monkeypatch):
    """Two stages (each a fresh optimizer, its own seed and lr schedule), as chapter 11's autoencoder phases."""
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    stages = lambda p: [Stage(make_schedule("linear", 50), TrainConfig(steps=4, batch_size=8, warmup=2, checkpoint_every=1)),  # noqa: E731
                        Stage(make_schedule("cosine", 50), TrainConfig(steps=5, batch_size=4, warmup=50, seed=1,
                                                                       checkpoint_every=1, lr_schedule="warmup-times-cosine"))]
    recipe = _tiny(name="two", objective=None, train_config=None, stages=stages, shipped=())
    whole, info = obtain(recipe, "smoke", run_dir=tmp_path / "whole", progress=False)
    assert info["steps"] == 9 and len(info["losses"]) == 9 and isinstance(info["train_config"], list)
    assert has_checkpoint(tmp_path / "whole" / "stage-1") and has_checkpoint(tmp_path / "whole" / "stage-2")
    calls = {"n": 0}

    def kill_in_stage_two(step_info):  # the callback runs in the last stage only
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        obtain(recipe, "smoke", run_dir=tmp_path / "killed", progress=False, callback=kill_in_stage_two)
    assert read_state(tmp_path / "killed" / "stage-2")["step"] == 2
    resumed, rinfo = obtain(recipe, "smoke", run_dir=tmp_path / "killed", progress=False)
    assert not rinfo["cached"] and _equal(whole, resumed)


def test_until_stops_the_recipe_at_a_step_and_reads_it_back(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    early = _tiny(name="early", until=lambda p: 4, shipped=())
    model, info = obtain(early, "smoke", progress=False)
    assert info["steps"] == 4 and read_state(tmp_path / "early-smoke")["step"] == 4
    again, info2 = obtain(early, "smoke", progress=False)
    assert info2["cached"] and _equal(model, again)


def test_a_run_written_by_an_older_version_is_trained_afresh(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    obtain(_tiny(), "smoke", progress=False)
    path = tmp_path / "tiny-smoke" / "checkpoint.json"
    state = json.loads(path.read_text())
    del state["optimizer_param_groups"]  # what a checkpoint of an older course version lacks
    path.write_text(json.dumps(state))
    _, info = obtain(_tiny(), "smoke", progress=False)
    assert not info["cached"] and "optimizer_param_groups" in read_state(tmp_path / "tiny-smoke")


def test_extras_and_scores_are_kept_in_the_run_card(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    seen = []
    recipe = _tiny(name="extra", extras=lambda m, p: seen.append(1) or {"norm": float(m.lin.weight.norm())}, shipped=())
    _, info = obtain(recipe, "smoke", progress=False)
    _, again = obtain(recipe, "smoke", progress=False)
    assert seen == [1] and info["norm"] == again["norm"]
    calls = []
    compute = lambda: calls.append(1) or {"acc": 0.9}  # noqa: E731
    assert card_scores(info["run_dir"], compute) == card_scores(info["run_dir"], compute) == {"acc": 0.9}
    assert calls == [1]
    held = json.loads((tmp_path / "extra-smoke" / "card.json").read_text())
    assert set(held) == {"sha256", "identity", "info", "scores"} and held["info"]["extras"] == {"norm": info["norm"]}


def test_bad_records_and_names_fail_early():
    with pytest.raises(ValueError, match="needs data"):
        Recipe(name="x", build=lambda p: Affine(), objective=lambda p: None, train_config=lambda p: TrainConfig())
    with pytest.raises(ValueError, match="neither trains"):
        Recipe(name="x", build=lambda p: Affine())
    with pytest.raises(ValueError, match="give its identity"):
        Recipe(name="x", build=lambda p: Affine(), shipped=("cpu",))
    with pytest.raises(ValueError, match="registered names"):
        obtain("no such model", "smoke")
    load_all_records()
    with pytest.raises(ValueError, match="already registered"):
        register(_tiny(name="digits"))
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")


def test_every_shipped_record_verifies_and_every_record_is_listed(capsys, monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)  # the tests' smoke default would win over "cpu"
    records = load_all_records()
    for name in ("digits", "digits_cond", "digits_race", "noisy_classifier", "gan", "vae", "flow_digits", "reflow_digits",
                 "latent_ae", "latent_crossattn", "latent_pooled", "digit_classifier", "attributes", "scene_judge"):
        assert name in records, name
    for recipe in records.values():
        for profile in recipe.shipped:
            if profile == "cpu" or recipe.frozen:  # the shipped files: sha256 and identity checked
                model, held = load_shipped(recipe, recipe.build(profile), profile)
                assert set(held) == {"sha256", "identity", "info", "scores"}, recipe.name
    assert main(["list"]) == 0
    assert "latent_ae" in capsys.readouterr().out


def test_learning_rate_schedules_and_the_config_identity_of_later_fields():
    cfg = TrainConfig(steps=100, lr=1e-3, warmup=10)
    assert lr_at(4, cfg) == 1e-3 * 5 / 10 and lr_at(4, cfg, 2e-3) == 2e-3 * 5 / 10
    const = replace(cfg, lr_schedule="constant")
    assert lr_at(0, const) == lr_at(99, const) == 1e-3
    times = replace(cfg, warmup=50, lr_schedule="warmup-times-cosine")  # chapter 11's autoencoder phases
    for step in (0, 10, 49, 50, 99):
        assert lr_at(step, times) == 1e-3 * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / 100))
    assert "lr_schedule" in LATER_FIELDS and "lr_schedule" not in config_identity(cfg)
    assert config_identity(const)["lr_schedule"] == "constant"


def test_registry_names_are_unique_per_record():
    load_all_records()
    assert all(r.name == name for name, r in RECIPES.items())
