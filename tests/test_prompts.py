"""Chapter 08: the text encoder, the prompt-conditioned denoiser, classifier-free guidance with the
empty prompt, generate_from_prompts(), the cached prompt model and its benchmark (smoke sizes, a few seconds)."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from course_lib.captions import MAX_PROMPT_LENGTH, VOCAB, tokenize
from course_lib.hats import make_hats_dataset
from course_lib.models.text import NO_PROMPT, PromptDenoiser, TextEncoder, TextEncoderConfig
from course_lib.models.unet import UNet, UNetConfig
from course_lib.pretrained import HELD_OUT, build_prompt_model, prompt_model, prompt_recipe
from course_lib.prompts import (
    UNSEEN_PER_PROMPT_FACTOR, UNSEEN_PROMPTS, background_speckle, generate_from_prompts, prompt_benchmark, score_prompts,
    seen_prompts,
)
from course_lib.guidance import cfg_model
from course_lib.schedules import make_schedule
from course_lib.objectives import drop_condition

PROMPTS = ["a cat wearing a red hat", "a dog with no hat", "a dog on a blue background"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _tiny_model(seed: int = 0) -> PromptDenoiser:
    torch.manual_seed(seed)
    unet = UNetConfig(image_size=16, in_channels=3, base_channels=8, channel_mults=(1, 2), attention_resolutions=(),
                      norm_groups=4, cond_dim=12)
    model = PromptDenoiser(UNet(unet), TextEncoder(TextEncoderConfig(width=16, num_heads=2, out_dim=12)))
    with torch.no_grad():  # a learned, non-zero empty vector, so "empty" and "a prompt" can't coincide by accident
        model.unet.cond_embed.empty.normal_()
    return model.eval()


# ----------------------------------------------------------------------------- text encoder
@pytest.mark.parametrize("num_layers", [0, 1, 2])
def test_text_encoder_shapes_and_the_empty_prompt(num_layers):
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(width=16, num_layers=num_layers, num_heads=4, out_dim=10))
    ids = tokenize(PROMPTS + [""])  # (4, L)
    out = enc(ids)
    assert out.shape == (4, 10)
    assert torch.isfinite(out[:3]).all() and torch.isnan(out[3]).all()  # "" → NaN row = no condition
    assert not torch.allclose(out[0], out[1])  # different prompts, different vectors
    # padding is ignored: a shorter tensor holding the same words gives the same vectors
    assert torch.allclose(enc(ids[:3, :10]), out[:3], atol=1e-5)
    # gradients are finite even with an empty prompt in the batch (it never enters the attention)
    enc(ids)[:3].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


def test_text_encoder_rejects_bad_tokens():
    enc = TextEncoder(TextEncoderConfig(width=8, num_heads=2, out_dim=4))
    with pytest.raises(ValueError, match="vocabulary size"):
        enc(torch.full((1, 3), len(VOCAB)))
    with pytest.raises(ValueError, match="integer tensor"):
        enc(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=f"L <= {MAX_PROMPT_LENGTH}"):
        enc(torch.ones(1, MAX_PROMPT_LENGTH + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="num_heads"):
        TextEncoderConfig(width=10, num_heads=4)


def test_prompt_denoiser_checks_its_parts():
    unet = UNet(UNetConfig(image_size=16, in_channels=3, base_channels=8, channel_mults=(1, 2), attention_resolutions=(),
                           norm_groups=4, cond_dim=12))
    with pytest.raises(ValueError, match="cond_dim=12 must equal the text encoder's out_dim=7"):
        PromptDenoiser(unet, TextEncoder(TextEncoderConfig(width=8, num_heads=2, out_dim=7)))
    model = _tiny_model()
    with pytest.raises(ValueError, match="token ids"):
        model(torch.zeros(2, 3, 16, 16), 10, cond=tokenize(PROMPTS))  # 3 prompts for 2 images


# ----------------------------------------------------------------------------- the empty prompt in CFG
def test_no_condition_rows_are_the_empty_prompt():
    model, x, t = _tiny_model(), torch.randn(3, 3, 16, 16), torch.tensor([10, 500, 900])
    empty = model(x, t, cond=tokenize(["", "", ""]))
    assert torch.allclose(model(x, t), empty, atol=1e-6)
    assert torch.allclose(model(x, t, cond=torch.full((3, MAX_PROMPT_LENGTH), NO_PROMPT)), empty, atol=1e-6)
    assert not torch.allclose(model(x, t, cond=tokenize(PROMPTS)), empty, atol=1e-4)
    # condition dropout in training marks whole token rows with -1, which the model reads as ""
    dropped = drop_condition(tokenize(PROMPTS), torch.tensor([True, False, True]))
    assert (dropped[0] == NO_PROMPT).all() and torch.equal(dropped[1], tokenize(PROMPTS[1])) and (dropped[2] == -1).all()


def test_cfg_with_prompts_uses_the_empty_prompt_as_no_condition():
    model, x, t = _tiny_model(), torch.randn(3, 3, 16, 16), torch.tensor([10, 500, 900])
    cond = tokenize(PROMPTS)
    with torch.no_grad():
        eps_c = model(x, t, cond=cond)
        eps_0 = model(x, t, cond=tokenize([""] * 3))
        assert torch.allclose(cfg_model(model, 0.0)(x, t, cond), eps_0, atol=1e-5)  # s = 0: ignore the prompt
        assert torch.allclose(cfg_model(model, 1.0)(x, t, cond), eps_c, atol=1e-5)  # s = 1: plain conditional
        assert torch.allclose(cfg_model(model, 4.0)(x, t, cond), eps_0 + 4.0 * (eps_c - eps_0), atol=1e-4)


def test_generate_empty_prompt_is_unaffected_by_guidance_and_seeds_are_reproducible():
    model, schedule = _tiny_model(), make_schedule("cosine")
    kw = dict(num_steps=3, schedule=schedule)
    a = generate_from_prompts(model, ["", "a cat wearing a hat"], guidance_scale=0.0, seed=3, **kw)
    b = generate_from_prompts(model, ["", "a cat wearing a hat"], guidance_scale=5.0, seed=3, **kw)
    assert a.shape == (2, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.allclose(a[0], b[0], atol=1e-5)  # ε_∅ + s·(ε_∅ − ε_∅) = ε_∅ for every s
    assert not torch.allclose(a[1], b[1], atol=1e-3)  # a real prompt is steered by s
    assert torch.equal(generate_from_prompts(model, PROMPTS, seed=7, **kw), generate_from_prompts(model, PROMPTS, seed=7, **kw))
    assert not torch.equal(generate_from_prompts(model, PROMPTS, seed=7, **kw), generate_from_prompts(model, PROMPTS, seed=8, **kw))
    two = generate_from_prompts(model, PROMPTS[:2], seed=7, per_prompt=2, sampler="euler", **kw)
    assert two.shape == (4, 3, 16, 16)


def test_generate_rejects_unknown_words_and_bad_arguments():
    model = _tiny_model()
    with pytest.raises(ValueError, match="sombrero.*Allowed words: .*cat"):
        generate_from_prompts(model, ["a cat wearing a sombrero"], num_steps=2)
    with pytest.raises(ValueError, match="list of strings"):
        generate_from_prompts(model, "a cat", num_steps=2)
    with pytest.raises(ValueError, match="guidance_scale"):
        generate_from_prompts(model, ["a cat"], guidance_scale=-1.0, num_steps=2)
    with pytest.raises(ValueError, match="sampler='plms' is not allowed"):
        generate_from_prompts(model, ["a cat"], sampler="plms", num_steps=2)
    with pytest.raises(ValueError, match="PromptDenoiser"):
        generate_from_prompts(UNet(UNetConfig.preset("tiny")), ["a cat"], num_steps=2)


# ----------------------------------------------------------------------------- prompts, the cached model, the benchmark
def test_seen_and_unseen_prompts():
    seen = seen_prompts(HELD_OUT)
    assert len(seen) == 11 and "a dog wearing a green hat" not in seen and "a cat wearing a green hat" in seen
    assert UNSEEN_PROMPTS == ["a dog wearing a green hat"] and len(seen_prompts(())) == 12
    assert seen_prompts([("cat", "no hat")])[-1] == "a dog with no hat"


def test_prompt_model_trains_in_smoke_then_loads_from_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    model, schedule, info = prompt_model("smoke", run_dir=tmp_path, device="cpu", progress=False)
    recipe = prompt_recipe("smoke")
    assert info["cached"] is False and info["steps"] == recipe.train.steps and info["train_seconds"] > 0
    assert info["train_config"]["cond_drop_prob"] == pytest.approx(0.1) and info["exclude"] == [["dog", "green"]]
    assert all(math.isfinite(v) for v in info["losses"])
    again, _, info2 = prompt_model("smoke", run_dir=tmp_path, device="cpu", progress=False)
    assert info2["cached"] is True
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    images = generate_from_prompts(model, ["a dog wearing a green hat"], num_steps=2, schedule=schedule)
    assert images.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="'sombrero' is not an attribute value"):
        prompt_model("smoke", run_dir=tmp_path / "x", exclude=[("dog", "sombrero")], progress=False)
    # a different held-out set is a different data set: the old checkpoint refuses it, clearly
    from course_lib.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match="data set"):
        prompt_model("smoke", run_dir=tmp_path, exclude=(), device="cpu", progress=False)


def test_build_prompt_model_is_seeded_by_the_recipe():
    recipe = prompt_recipe("smoke")
    a, b = build_prompt_model(recipe), build_prompt_model(recipe)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_score_prompts_on_real_pictures():
    data = make_hats_dataset(8, seed=5)
    caps = data.captions
    score = score_prompts(data.images, caps, per_prompt=1)
    assert score["prompt_accuracy"] == 1.0  # the shipped classifier reads the data set's own pictures right
    wrong = [c.replace("cat", "DOG").replace("dog", "cat").replace("DOG", "dog") for c in caps]
    assert score_prompts(data.images, wrong, per_prompt=1)["prompt_accuracy"] == 0.0
    assert set(score["per_attribute"]) <= {"animal", "hat", "hat_colour", "background"}


def test_prompt_benchmark_smoke(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path / "runs"))  # a fresh cache, outside the checkout
    result = prompt_benchmark("smoke", device="cpu", guidance_scale=2.0)
    assert 0.0 <= result["prompt_accuracy"] <= 1.0 and 0.0 <= result["unseen_prompt_accuracy"] <= 1.0
    assert result["guidance_scale"] == 2.0 and result["prompt_train_seconds"] > 0
    assert set(result["per_prompt"]) == set(seen_prompts()) and result["num_samples"] == 11 + UNSEEN_PER_PROMPT_FACTOR
    assert result["background_speckle"] >= 0 and result["shipped"] is False
    assert set(result["per_attribute"]) == {"animal", "hat", "hat_colour"}
    assert (tmp_path / "runs" / "prompts-smoke-without-dog-green").is_dir()


def test_background_speckle_is_near_zero_for_real_pictures_and_large_for_static():
    real = make_hats_dataset(200, seed=5).images
    assert background_speckle(real) < 1.5  # 8-bit levels: a flat background scores 0
    noisy = (real + 0.1 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert background_speckle(noisy) > 8  # static of σ = 0.05 in [0, 1] is about 12.7 levels
    with pytest.raises(ValueError, match="hats pictures"):
        background_speckle(torch.zeros(2, 1, 32, 32))


def test_only_the_default_prompt_record_ships_and_the_cpu_profile_loads_it(monkeypatch):
    from course_lib.pretrained import PROMPTS, prompt_record

    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert PROMPTS.shipped == ("cpu",) and prompt_record(()).shipped == ()
    model, _, info = prompt_model("cpu", exclude=[("dog", "green")], device="cpu", progress=False)
    assert info["shipped"] and info["run_dir"] is None and info["steps"] == prompt_recipe("cpu").train.steps
    assert model.prediction_type == "v_prediction"


def test_guidance_slider_falls_back_to_a_static_grid(monkeypatch):
    from course_lib import widgets

    monkeypatch.setenv("COURSE_STATIC", "1")
    fig = widgets.prompt_guidance_slider(_tiny_model(), ["a cat", ""], scales=(0, 3), num_steps=2,
                                         schedule=make_schedule("cosine"))
    assert isinstance(fig, plt.Figure) and sum(ax.has_data() for ax in fig.axes) == 4


def test_captioned_grid_checks_captions():
    from course_lib.viz import captioned_grid

    assert isinstance(captioned_grid(torch.zeros(3, 3, 8, 8), ["a", "b", "c"], ncols=2), plt.Figure)
    with pytest.raises(ValueError, match="one caption each"):
        captioned_grid(torch.zeros(3, 3, 8, 8), ["a"])
