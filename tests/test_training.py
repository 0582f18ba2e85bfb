"""The training loop: LR schedule, EMA warm-up, Min-SNR weights, targets, conditioning, divergence."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from course_lib.checkpoints import load_checkpoint, read_state
from course_lib.forward import target
from course_lib.models import MLPConfig, MLPDenoiser, UNet, UNetConfig
from course_lib.schedules import make_schedule
from course_lib.objectives import diffusion_loss, drop_condition, min_snr_weight
from course_lib.training import TrainConfig, TrainingDiverged, ema_decay_at, ema_update, lr_at, train

TINY = UNetConfig.preset("tiny")


def _model(cfg: UNetConfig = TINY, seed: int = 0) -> UNet:
    torch.manual_seed(seed)  # initial weights are part of a run: seed them like the loop
    return UNet(cfg)


def _images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ----------------------------------------------------------------------------- schedules of the loop
def test_lr_warms_up_linearly_then_decays_by_cosine():
    cfg = TrainConfig(steps=110, lr=1e-3, warmup=10)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(0.5e-3)  # half-way through the cosine
    assert lr_at(109, cfg) < 1e-6
    assert lr_at(0, TrainConfig(steps=10, lr=2e-3, warmup=0)) == pytest.approx(2e-3)


def test_ema_decay_warm_up_formula():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(91 / 100)
    assert ema_decay_at(10**6, 0.999) == 0.999
    assert ema_decay_at(50, 0.5) == 0.5  # never above the configured decay


def test_ema_follows_the_model_after_a_few_hundred_steps():
    """With a plain 0.999 the EMA would still be 0.999^300 ≈ 74 % its random start; with warm-up it is not."""
    model, ema = nn.Linear(3, 3), nn.Linear(3, 3)
    with torch.no_grad():
        for p in ema.parameters():
            p.fill_(0.0)
        for p in model.parameters():
            p.fill_(1.0)
    keep = 1.0
    for n in range(300):
        ema_update(ema, model, ema_decay_at(n, 0.999))
        keep *= ema_decay_at(n, 0.999)
    w = ema.weight.detach()
    assert torch.allclose(w, torch.full_like(w, 1.0 - keep), atol=1e-6)  # θ_ema = (1 − Π decay)·1
    assert float(w.min()) > 0.99 and 0.999**300 > 0.7


def test_min_snr_weights_match_hang_et_al():
    s = make_schedule("linear")
    t = torch.tensor([0, 200, 999])
    snr = s.snr(t)
    gamma = 5.0
    eps_w = min_snr_weight(s, t, gamma, "epsilon")
    assert torch.allclose(eps_w, torch.clamp(snr, max=gamma) / snr)
    assert eps_w[0] == pytest.approx(gamma / float(snr[0]), rel=1e-5) and eps_w[2] == pytest.approx(1.0)
    assert torch.allclose(min_snr_weight(s, t, gamma, "sample"), torch.clamp(snr, max=gamma))
    assert torch.allclose(min_snr_weight(s, t, gamma, "v_prediction"), torch.clamp(snr, max=gamma) / (snr + 1))


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_an_oracle_gets_zero_loss_for_each_target(prediction_type):
    """A network that knows x₀ and answers in the asked-for form scores zero: the loop uses forward.target."""
    s = make_schedule("cosine")
    x0 = torch.rand(1, 1, 8, 8) * 2 - 1

    def oracle(x_t, t, cond=None):
        a = s.alphas_cumprod[t].view(-1, 1, 1, 1)
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        return target(s, x0.expand_as(x_t), eps, t, prediction_type)

    t = torch.tensor([5, 500, 990])
    noise = torch.randn(3, 1, 8, 8)
    x = x0.expand(3, -1, -1, -1)
    assert float(diffusion_loss(oracle, s, x, t, noise, prediction_type=prediction_type)) < 1e-8
    wrong = "sample" if prediction_type != "sample" else "epsilon"
    assert float(diffusion_loss(oracle, s, x, t, noise, prediction_type=wrong)) > 1e-3
    # min-SNR weighting changes the numbers but keeps the oracle at zero
    assert float(diffusion_loss(oracle, s, x, t, noise, prediction_type=prediction_type, min_snr_gamma=5.0)) < 1e-8


def test_drop_condition_for_labels_and_vectors():
    drop = torch.tensor([True, False, True])
    assert drop_condition(torch.tensor([4, 5, 6]), drop).tolist() == [-1, 5, -1]
    v = drop_condition(torch.ones(3, 2), drop)
    assert torch.isnan(v[0]).all() and torch.isnan(v[2]).all() and torch.equal(v[1], torch.ones(2))


# ----------------------------------------------------------------------------- the loop
def test_train_runs_and_the_loss_falls():
    x = _images(32)
    cfg = TrainConfig(steps=60, batch_size=16, lr=3e-3, warmup=5, checkpoint_every=0)
    res = train(_model(), make_schedule("linear"), x, cfg, progress=False)
    assert res.steps == 60 and len(res.losses) == 60 and res.seconds > 0
    assert sum(res.losses[-15:]) / 15 < 0.8 * sum(res.losses[:5]) / 5
    assert not res.ema_model.training and all(not p.requires_grad for p in res.ema_model.parameters())
    changed = [not torch.equal(a, b) for a, b in zip(res.model.parameters(), res.ema_model.parameters())]
    assert any(changed)  # the EMA is its own copy, not the model


def test_train_is_deterministic_for_a_seed_and_differs_across_seeds():
    x = _images(16)
    s = make_schedule("linear")
    runs = [train(_model(), s, x, TrainConfig(steps=5, batch_size=8, seed=seed, checkpoint_every=0), progress=False)
            for seed in (1, 1, 2)]
    assert runs[0].losses == runs[1].losses and runs[0].losses != runs[2].losses


def test_the_mlp_trains_on_2d_points():
    pts = torch.randn(64, 2)
    res = train(MLPDenoiser(MLPConfig(hidden=32, num_blocks=1)), make_schedule("linear", 100), pts,
                TrainConfig(steps=5, batch_size=32, checkpoint_every=0), progress=False)
    assert res.ema_model(pts[:3], 10).shape == (3, 2)


class _Spy(nn.Module):
    """Wraps a model and records the conditions the loop passes."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.config, self.seen = inner, inner.config, []

    def forward(self, x_t, t, cond=None):
        self.seen.append(cond.clone())
        return self.inner(x_t, t, cond)


def test_conditional_training_drops_labels_with_the_given_probability():
    spy = _Spy(UNet(UNetConfig.preset("tiny", num_classes=4)))
    labels = torch.arange(32) % 4
    train(spy, make_schedule("linear"), (_images(32), labels),
          TrainConfig(steps=20, batch_size=32, cond_drop_prob=0.3, checkpoint_every=0), progress=False)
    seen = torch.cat(spy.seen[:20])
    frac = float((seen == -1).float().mean())
    assert 0.2 < frac < 0.4 and set(seen[seen >= 0].tolist()) <= {0, 1, 2, 3}


def test_train_rejects_mismatched_data_and_models():
    s = make_schedule("linear")
    cfg = TrainConfig(steps=1, batch_size=2, checkpoint_every=0)
    with pytest.raises(ValueError, match="model is unconditional"):
        train(_model(), s, (_images(4), torch.zeros(4, dtype=torch.long)), cfg, progress=False)
    with pytest.raises(ValueError, match="data has no conditions"):
        train(UNet(UNetConfig.preset("tiny", num_classes=2)), s, _images(4), cfg, progress=False)
    with pytest.raises(ValueError, match="x_t has shape"):
        train(_model(), s, torch.zeros(4, 1, 32, 32), cfg, progress=False)
    with pytest.raises(ValueError, match="prediction_type"):
        TrainConfig(prediction_type="eps")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    def poison(info):
        if info.step == 3:  # after the checkpoint at step 2, break the weights
            with torch.no_grad():
                next(info.model.parameters()).fill_(float("nan"))

    cfg = TrainConfig(steps=10, batch_size=4, checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 4.*checkpoint \(step 2\)"):
        train(_model(), make_schedule("linear"), _images(8), cfg, run_dir=tmp_path, progress=False, callback=poison)
    tensors, state = load_checkpoint(tmp_path)  # verifies the sha256
    assert state["step"] == 2 and read_state(tmp_path)["step"] == 2
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if v.dtype.is_floating_point)


def test_nan_in_the_data_is_reported_without_a_checkpoint():
    x = _images(4)
    x[:] = float("nan")
    with pytest.raises(TrainingDiverged, match="no checkpoint was written"):
        train(_model(), make_schedule("linear"), x, TrainConfig(steps=3, batch_size=2, checkpoint_every=0), progress=False)


def test_train_with_progress_bar_and_callback():
    calls = []
    train(_model(), make_schedule("linear"), _images(4), TrainConfig(steps=3, batch_size=2, checkpoint_every=0),
          progress=True, callback=lambda info: calls.append((info.step, math.isfinite(info.loss), info.lr > 0)))
    assert calls == [(1, True, True), (2, True, True), (3, True, True)]


def test_digits_model_trains_once_then_loads_from_its_verified_checkpoint(tmp_path, monkeypatch):
    from course_lib.checkpoints import CheckpointError
    from course_lib.pretrained import digits_model, digits_train_config

    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    ema, schedule, info = digits_model("smoke", run_dir=tmp_path, device="cpu", progress=False)
    assert info["cached"] is False and info["steps"] == digits_train_config("smoke").steps
    assert info["config"] == UNetConfig.preset("digits-smoke").to_dict() and info["train_seconds"] > 0
    assert ema(torch.zeros(2, 1, 32, 32), 500).shape == (2, 1, 32, 32)
    ema2, _, info2 = digits_model("smoke", run_dir=tmp_path, device="cpu", progress=False)
    assert info2["cached"] is True and info2["train_seconds"] == pytest.approx(info["train_seconds"])
    assert all(torch.equal(a, b) for a, b in zip(ema.state_dict().values(), ema2.state_dict().values()))
    assert schedule.num_timesteps == 1000
    # a conditional model is a different recipe: the same directory refuses it, clearly
    with pytest.raises(CheckpointError, match="num_classes"):
        digits_model("smoke", cond=True, run_dir=tmp_path, device="cpu", progress=False)


def test_cpu_profile_loads_the_shipped_class_conditional_model_of_its_own_recipe(tmp_path, monkeypatch):
    """The cpu class-conditional digits model ships (benchmarks/train_digits_cond.py): it loads verified,
    training and writing nothing, reads v, and its card's default-sampling margins are the 1.98× and
    2.33× the test digits' value (the card's unit; 1.2× and 1.4× chapter 10's all-digit reference) that
    chapter 10 and the README quote; a card for another recipe is refused."""
    from course_lib.checkpoints import CheckpointError
    from course_lib.models.unet import UNet, digits_config
    from course_lib.pretrained import DIGITS_COND, cond_identity, digits_model
    from course_lib.registry import card, load_shipped
    from course_lib.samplers import sample

    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("COURSE_PROFILE", raising=False)  # the tests' smoke default would win over "cpu"
    model, schedule, info = digits_model("cpu", cond=True, device="cpu", progress=False)
    assert info["shipped"] and info["cached"] and not any(tmp_path.iterdir())  # nothing trained or written
    assert model.prediction_type == info["prediction_type"] == "v_prediction"
    assert info["steps"] == cond_identity("cpu")["train_config"]["steps"]
    scores = card(DIGITS_COND)["scores"]
    margins = [v for k, v in scores.items() if k.startswith("margin x real")]  # × the 1,000 test digits' 0.0020
    assert len(margins) == 2 and max(margins) < 2.5, f"the shipped card records margins {margins}× test digits (1.98, 2.33)"
    x = sample(model, schedule, (2, 1, 32, 32), cond=torch.tensor([3, 7]), guidance_scale=3, num_steps=2,
               generator=torch.Generator().manual_seed(0), progress=False)
    assert x.shape == (2, 1, 32, 32) and x.isfinite().all()
    with pytest.raises(CheckpointError, match="another recipe"):
        load_shipped(DIGITS_COND, UNet(digits_config("cpu", num_classes=10)), "smoke")  # the smoke recipe's identity


def test_train_throughput_benchmark_reports_json(capsys, load_benchmark, monkeypatch):
    """benchmarks/train_throughput.py in the smoke profile: one JSON object with the agreed keys."""

    pytest.importorskip("diffusers")
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    bench = load_benchmark("train_throughput")
    bench.main(["--profile", "smoke", "--device", "cpu", "--rounds", "1", "--threads", "1", "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("device", "course_params", "diffusers_params", "course_train_img_per_s", "diffusers_train_img_per_s",
                "train_speedup", "profile", "wall_seconds"):
        assert key in out
    assert out["profile"] == "smoke" and out["device"] == "cpu"
    assert abs(out["diffusers_params"] - out["course_params"]) < 0.25 * out["course_params"]  # about equal size
    assert out["course_train_img_per_s"] > 0 and out["diffusers_train_img_per_s"] > 0


# ----------------------------------------------------------------------------- callbacks and objectives
def test_library_callbacks_stop_record_and_snapshot(tmp_path):
    from course_lib.callbacks import Recorder, Snapshots, StopAfter, model_weights

    cfg = TrainConfig(steps=10, batch_size=4, checkpoint_every=0)
    rec, snaps, raw = Recorder(), Snapshots([2, 4]), Snapshots([3], take=model_weights)
    res = train(_model(), make_schedule("linear"), _images(8), cfg, run_dir=tmp_path, progress=False,
                callback=[rec, snaps, raw, StopAfter(steps=4)])
    assert res.steps == 4 and rec.steps == [1, 2, 3, 4] and rec.losses == res.losses and len(rec.seconds) == 4
    assert snaps.complete and raw.complete and sorted(snaps.taken) == [2, 4]
    assert all(torch.equal(v, res.ema_model.state_dict()[k]) for k, v in snaps.taken[4].items())
    assert read_state(tmp_path)["step"] == 4  # a stopped run is checkpointed ...
    full = train(_model(), make_schedule("linear"), _images(8), cfg, run_dir=tmp_path, progress=False)
    straight = train(_model(), make_schedule("linear"), _images(8), cfg, progress=False)
    assert full.losses == straight.losses  # ... and resumes exactly
    assert all(torch.equal(a, b) for a, b in zip(full.model.parameters(), straight.model.parameters()))
    with pytest.raises(ValueError, match="steps= or seconds="):
        StopAfter()
    quick = train(_model(), make_schedule("linear"), _images(8), cfg, progress=False, callback=StopAfter(seconds=0))
    assert quick.steps == 1


def test_any_objective_trains_through_the_same_loop_and_is_checked_on_resume(tmp_path):
    from course_lib.checkpoints import CheckpointError
    from course_lib.objectives import NoisyClassifierObjective

    class Regression:  # fit model(x, 0) to the mean pixel: loss + identity are all train() needs
        def __init__(self, scale: float) -> None:
            self.scale = scale

        def loss(self, model, x0, cond, generator):
            out = model(x0, torch.zeros(len(x0), dtype=torch.long))
            return (out.mean((1, 2, 3)) - self.scale * x0.mean((1, 2, 3))).pow(2).mean()

        def identity(self):
            return {"scale": self.scale}

    cfg = TrainConfig(steps=4, batch_size=4, checkpoint_every=0)
    res = train(_model(), Regression(1.0), _images(8), cfg, run_dir=tmp_path, progress=False)
    assert res.steps == 4 and read_state(tmp_path)["objective"] == {"scale": 1.0}
    with pytest.raises(CheckpointError, match="training objective"):
        train(_model(), Regression(2.0), _images(8), cfg, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="diffusion loss only"):
        train(_model(), Regression(1.0), _images(8), TrainConfig(steps=1, min_snr_gamma=5.0), progress=False)
    with pytest.raises(ValueError, match="objective must be"):
        train(_model(), object(), _images(8), cfg, progress=False)
    with pytest.raises(ValueError, match="needs labels"):
        train(_model(), NoisyClassifierObjective(make_schedule("linear")), _images(8), cfg, progress=False)


# ----------------------------------------------------------------------------- mixed precision on GPUs without bf16
def test_autocast_dtype_per_device(monkeypatch):
    import course_lib.settings as settings
    import course_lib.training as training

    cuda = torch.device("cuda")  # only compared, never used: no GPU needed
    monkeypatch.setattr(settings, "_native_bf16", lambda: True)
    assert training.autocast_dtype(True, cuda) == torch.bfloat16  # A100, H100, L4
    monkeypatch.setattr(settings, "_native_bf16", lambda: False)
    assert training.autocast_dtype(True, cuda) == torch.float16  # Colab's T4: float16 with loss scaling
    assert training.autocast_dtype(False, cuda) is None
    monkeypatch.delenv("COURSE_GPU_DRYRUN", raising=False)
    assert training.autocast_dtype(True, torch.device("cpu")) is None  # float32: bitwise reproducible
    monkeypatch.setenv("COURSE_GPU_DRYRUN", "1")
    assert training.autocast_dtype(True, torch.device("cpu")) == torch.bfloat16


def test_a_scaled_step_is_the_plain_step_and_an_overflow_is_skipped():
    from course_lib.optim import optimizer_step

    def setup():
        torch.manual_seed(0)
        net = nn.Linear(4, 3)
        return net, torch.optim.AdamW(net.parameters(), lr=1e-2), torch.randn(8, 4)

    plain, opt, x = setup()
    optimizer_step(opt, plain(x).pow(2).mean(), grad_clip=0.5)
    scaled, opt, x = setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    optimizer_step(opt, scaled(x).pow(2).mean(), grad_clip=0.5, scaler=scaler)  # clipped after unscaling
    for a, b in zip(plain.parameters(), scaled.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    before = [p.detach().clone() for p in scaled.parameters()]
    optimizer_step(opt, scaled(x).pow(2).mean() * float("inf"), scaler=scaler)  # overflow: skipped, factor lowered
    assert all(torch.equal(a, b) for a, b in zip(before, scaled.parameters()))
    assert scaler.get_scale() < 2.0 ** 10


def test_train_runs_float16_autocast_with_loss_scaling(monkeypatch):
    import course_lib.training as training

    seen = []
    real_step = training.optimizer_step
    monkeypatch.setattr(training, "autocast_dtype", lambda amp, device: torch.float16 if amp else None)
    monkeypatch.setattr(training, "optimizer_step", lambda *a, **k: (seen.append(a[3]), real_step(*a, **k)))
    torch.manual_seed(0)
    model = MLPDenoiser(MLPConfig(hidden=32, num_blocks=1))
    result = train(model, make_schedule("linear", 100), torch.randn(256, 2),
                   TrainConfig(steps=30, batch_size=32, lr=1e-3, amp=True, checkpoint_every=0), progress=False)
    assert all(isinstance(s, torch.amp.GradScaler) for s in seen) and len(seen) == 30
    assert all(math.isfinite(v) for v in result.losses)


def test_a_float16_run_resumes_its_loss_scale(monkeypatch, tmp_path):
    """The loss scaler's factor is part of a float16 run's state: a resumed T4 run goes on with it (no skipped steps
    while it would grow back from 65,536) and ends where the uninterrupted run ends."""
    import course_lib.training as training
    from course_lib.training import limits

    monkeypatch.setattr(training, "autocast_dtype", lambda amp, device: torch.float16 if amp else None)
    config = TrainConfig(steps=8, batch_size=32, lr=1e-3, amp=True, checkpoint_every=4)
    data = torch.randn(256, 2, generator=torch.Generator().manual_seed(1))

    def run(run_dir):
        torch.manual_seed(0)
        return train(MLPDenoiser(MLPConfig(hidden=32, num_blocks=1)), make_schedule("linear", 100), data, config,
                     run_dir=run_dir, progress=False)

    whole = run(tmp_path / "whole")
    with limits(until=4):
        run(tmp_path / "parts")
    held = read_state(tmp_path / "parts")["loss_scalers"]["model"]
    assert held["scale"] > 0 and "_growth_tracker" in held
    rest = run(tmp_path / "parts")
    assert rest.losses == whole.losses
    assert read_state(tmp_path / "parts")["loss_scalers"] == read_state(tmp_path / "whole")["loss_scalers"]
