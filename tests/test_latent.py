"""Chapter 11: the scene world, the autoencoder, cross-attention, the latent pipeline and editing."""

import math
from dataclasses import replace

import pytest
import torch

from course_lib import latent
from course_lib.exercises import check
from course_lib.models.autoencoder import Autoencoder, AutoencoderConfig, AutoencoderObjective, kl_to_standard_normal, psnr
from course_lib.models.cross_attention import CrossAttention, cross_attention_weights
from course_lib.scenes import (
    HELD_OUT, MAX_SCENE_PROMPT_LENGTH, NOBODY, SCENE_VOCAB, compositional_prompts, held_out_mask, make_scenes,
    parse_scene_prompt, scene_caption, scene_tokenize,
)


# ----------------------------------------------------------------------------- the world
def test_scenes_are_deterministic_and_in_range():
    a, b = make_scenes(20, seed=3), make_scenes(20, seed=3)
    assert a.images.shape == (20, 3, 64, 64) and torch.equal(a.images, b.images) and a.captions == b.captions
    assert a.images.min() >= -1 and a.images.max() <= 1
    assert not torch.equal(a.images, make_scenes(20, seed=4).images)


def test_held_out_combinations_never_appear_in_training_scenes():
    data = make_scenes(400, seed=0)
    assert not held_out_mask(data.attributes).any()
    assert held_out_mask(make_scenes(400, seed=0, held_out=()).attributes).any()


def test_captions_parse_back_to_their_rows():
    data = make_scenes(60, seed=1)
    for row, caption in zip(data.attributes, data.captions):
        asked = parse_scene_prompt(caption)
        said = asked != -1
        assert torch.equal(asked[said], row[said]), caption
        assert said[[0, 3]].all()  # both places are always asked (an animal or nobody)


def test_parse_scene_prompt_examples():
    row = parse_scene_prompt("a cat in a red hat on the left and a dog with no hat on the right on a blue background")
    assert row.tolist() == [0, 1, 0, 1, 0, -1, 0]
    assert parse_scene_prompt("a dog wearing a green hat on the right").tolist() == [NOBODY, -1, -1, 1, 1, 1, -1]
    with pytest.raises(ValueError, match="placed"):
        parse_scene_prompt("a cat in a red hat")


def test_unknown_words_fail_listing_the_vocabulary():
    with pytest.raises(ValueError, match="outside the vocabulary: zebra.*Allowed words:.*left"):
        scene_tokenize("a zebra on the left")
    with pytest.raises(ValueError, match="at most"):
        scene_tokenize(" ".join(["a"] * (MAX_SCENE_PROMPT_LENGTH + 1)))
    assert scene_tokenize("").eq(0).all() and "right" in SCENE_VOCAB


def test_longest_caption_fits():
    row = [0, 1, 3, 1, 1, 3, 0]
    assert len(scene_caption(row, template=1).split()) <= MAX_SCENE_PROMPT_LENGTH


def test_compositional_prompts_ask_for_held_out_combinations():
    rows = torch.stack([parse_scene_prompt(p) for p in compositional_prompts()])
    rows = torch.where(rows < 0, torch.zeros_like(rows), rows)
    assert held_out_mask(rows).all() and len(HELD_OUT) == 2


# ----------------------------------------------------------------------------- autoencoder
def test_autoencoder_shapes_and_compression():
    cfg = AutoencoderConfig(width=8, latent_width=8)
    ae = Autoencoder(cfg)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    recon, mean, logvar = ae(x)
    assert recon.shape == x.shape and mean.shape == (2, 4, 16, 16) == logvar.shape
    assert cfg.compression == 12.0
    with pytest.raises(ValueError, match="divisible by 4"):
        ae.encode(torch.zeros(1, 3, 30, 30))


def test_kl_matches_torch_distributions():
    mean, logvar = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    want = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    assert torch.allclose(kl_to_standard_normal(mean, logvar), want, atol=1e-5)


def test_objective_plugs_into_the_training_loop_interface():
    obj = AutoencoderObjective(1e-6)
    ae = Autoencoder(AutoencoderConfig(width=8, latent_width=8))
    loss = obj.loss(ae, torch.zeros(2, 3, 32, 32), None, torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and loss.requires_grad and obj.identity()["kl_weight"] == 1e-6


def test_psnr():
    x = torch.zeros(1, 3, 8, 8)
    assert math.isclose(float(psnr(x + 0.02, x)), 10 * math.log10(4 / 0.0004), rel_tol=1e-4)


# ----------------------------------------------------------------------------- cross-attention
def test_cross_attention_weights_ignore_padding():
    q, k = torch.randn(2, 1, 5, 8), torch.randn(2, 1, 3, 8)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    w = cross_attention_weights(q, k, mask)
    assert torch.allclose(w.sum(-1), torch.ones(2, 1, 5))
    assert (w[0, :, :, 2] == 0).all() and (w[1, :, :, 1:] == 0).all()


def test_pixels_listen_to_their_words():
    layer = CrossAttention(8, 6, groups=2, head_channels=8)
    x = torch.randn(1, 8, 4, 4)
    ctx = torch.randn(1, 3, 6)
    full = layer(x, ctx, torch.ones(1, 3, dtype=torch.bool))
    changed = ctx.clone()
    changed[0, 2] += 1.0
    assert not torch.allclose(layer(x, changed, torch.ones(1, 3, dtype=torch.bool)), full)
    masked = torch.tensor([[True, True, False]])
    assert torch.allclose(layer(x, changed, masked), layer(x, ctx, masked))  # a masked word is never read


def reference_solution(q, k, mask):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return scores.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1)


def test_cross_attention_exercise_solution_passes_and_a_wrong_answer_fails():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 6, 4, generator=g), torch.randn(1, 2, 5, 4, generator=g)
    mask = torch.tensor([[True, True, True, False, False]])
    expected = cross_attention_weights(q, k, mask)
    assert check("cross-attention weights", reference_solution(q, k, mask), expected)
    unmasked = (q @ k.transpose(-1, -2) / 2).softmax(-1)  # forgot the padding mask
    with pytest.raises(AssertionError):
        check("cross-attention weights", unmasked, expected)
    with pytest.raises(AssertionError):
        check("cross-attention weights", (q @ k.transpose(-1, -2)).softmax(-1), expected)  # forgot the √d


def test_crossattn_unet_reads_an_empty_prompt_and_condition_dropout_rows():
    recipe = latent.latent_recipe("smoke")
    model = latent.build_latent_denoiser(recipe, "crossattn").eval()
    x, t = torch.randn(3, 4, 16, 16), torch.tensor([10, 500, 900])
    ids = scene_tokenize(["a cat on the left", "", "a dog in a red hat on the right"])
    dropped = ids.clone()
    dropped[1] = -1
    with torch.no_grad():
        a, b = model(x, t, cond=ids), model(x, t, cond=dropped)
    assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-6)


# ----------------------------------------------------------------------------- the pipeline (smoke recipe)
@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    import os

    os.environ["COURSE_RUNS_DIR"] = str(tmp_path_factory.mktemp("runs"))
    try:
        yield latent.load_pipeline("smoke", progress=False)
    finally:
        os.environ.pop("COURSE_RUNS_DIR")


def test_text_to_image_and_edits_have_the_right_shapes(pipe):
    images = latent.text_to_image(pipe, ["a cat in a red hat on the left"], per_prompt=2)
    assert images.shape == (2, 3, 64, 64) and images.abs().max() <= 1
    scenes = make_scenes(2, seed=5).images
    assert latent.img2img(pipe, scenes, "a dog on the right", strength=0.5).shape == scenes.shape
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :, :32] = 1
    painted = latent.inpaint(pipe, scenes, mask, "a dog on the left")
    assert torch.equal(painted[..., 32:], scenes[..., 32:])  # outside the mask nothing moves
    assert latent.inversion_edit(pipe, scenes, "a cat on the left", "a dog on the left").shape == scenes.shape


def test_strength_zero_keeps_the_latents(pipe):
    z0 = torch.randn(1, 4, 16, 16)
    assert torch.equal(latent.denoise_from(pipe, z0, scene_tokenize(["a cat on the left"]), 0.0), z0)


def test_attention_maps_one_per_word(pipe):
    image, maps = latent.attention_maps(pipe, "a dog in a red hat on the left", ["hat", "left", "dog"])
    assert image.shape == (3, 64, 64) and maps.shape == (3, 64, 64) and float(maps.max()) <= 1 + 1e-6
    with pytest.raises(ValueError, match="not in the prompt"):
        latent.attention_maps(pipe, "a dog on the left", ["cat"])


def test_edit_requests_change_exactly_one_hat():
    rows = make_scenes(30, seed=2).attributes
    edited = latent.edit_requests(rows)
    diff = (edited != rows)
    assert diff.any(1).all() and not diff[:, [0, 3, 6]].any()


# ----------------------------------------------------------------------------- the shipped scene judge
def test_scene_judge_reads_held_out_scenes_and_verifies_its_sha256(tmp_path):
    from course_lib.models.scene_judge import JUDGE_WEIGHTS, judge_scenes, load_scene_judge, scene_accuracy

    data = make_scenes(64, seed=2000, held_out=())
    judge = load_scene_judge()
    assert scene_accuracy(data.images, data.attributes, judge) >= 0.95
    assert judge_scenes(data.images[:2], judge).shape == (2, 7)
    bad = tmp_path / "judge.safetensors"
    raw = bytearray(JUDGE_WEIGHTS.read_bytes())
    raw[-1] ^= 1
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        load_scene_judge(bad)


def test_latent_benchmark_reports_json(capsys, load_benchmark, monkeypatch, tmp_path):
    """benchmarks/latent.py in the smoke profile: one JSON object with the issue's keys."""
    import json

    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    bench = load_benchmark("latent")
    bench.main(["--profile", "smoke", "--threads", "1", "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in bench.KEYS + ("profile", "device", "threads", "load_average", "wall_seconds"):
        assert key in out, key
    assert out["profile"] == "smoke" and out["compression"] == 12.0
    assert 0 <= out["prompt_accuracy_crossattn"] <= 1 and 0 <= out["edit_success"] <= 1


def test_cross_attention_function_exercise_solution_passes_and_wrong_answers_fail():
    from course_lib import exercises as E

    assert E.check_cross_attention(E.solution_cross_attention) is True
    assert E.check_cross_attention(lambda q, k, mask: None) is False
    with pytest.raises(AssertionError, match="✗"):  # forgot the √d
        E.check_cross_attention(lambda q, k, mask: (q @ k.transpose(-1, -2)).masked_fill(
            ~mask[:, None, None, :], float("-inf")).softmax(-1))


# ----------------------------------------------------------------------------- chapter 11's shipped weights
@pytest.mark.parametrize("conditioning", ["crossattn", "pooled"])
def test_cpu_profile_loads_the_shipped_networks_of_its_own_recipe(conditioning, monkeypatch, tmp_path):
    """The cpu recipe's weights ship (trained by benchmarks/train_latent.py) and load verified, training nothing."""
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("COURSE_PROFILE", raising=False)  # the tests' smoke default would win over "cpu"
    ae, ae_info = latent.autoencoder_model("cpu", progress=False)
    assert ae_info["shipped"] and ae_info["scale_factor"] > 0
    model, schedule, info = latent.latent_model("cpu", conditioning, ae=ae, scale_factor=ae_info["scale_factor"], progress=False)
    assert info["shipped"] and info["steps"] == latent.latent_recipe("cpu").train.steps
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
    pipe = latent.Pipeline(ae, model, schedule, ae_info["scale_factor"], num_steps=2)
    assert latent.text_to_image(pipe, ["a cat in a red hat on the left"]).shape == (1, 3, 64, 64)


def test_both_latent_denoisers_get_the_same_position_map_after_their_stem():
    from course_lib.models.embeddings import PositionEmbedding

    recipe = latent.latent_recipe("smoke")
    for conditioning in latent.CONDITIONINGS:
        model = latent.build_latent_denoiser(recipe, conditioning)
        maps = [m for m in model.modules() if isinstance(m, PositionEmbedding)]
        assert len(maps) == 1 and maps[0].pos.shape == (1, recipe.unet.widths[0], 16, 16), conditioning
    plain = latent.build_latent_denoiser(replace(recipe, position_embedding=False), "crossattn")
    assert not any(isinstance(m, PositionEmbedding) for m in plain.modules())
    with pytest.raises(ValueError, match="cannot be added"):
        PositionEmbedding(8, 16)(torch.zeros(1, 8, 8, 8))



def test_reading_clauses_makes_a_clause_mean_the_same_wherever_it_stands():
    recipe = latent.latent_recipe("smoke")
    model = latent.build_latent_denoiser(recipe, "crossattn").eval()
    cat, dog = "a cat in a red hat on the left", "a dog with no hat on the right"
    ids = scene_tokenize([f"{cat} and {dog}", f"{dog} and {cat}"])
    context, mask = model.encode_prompt(ids)  # (2, 1 + L, D): the start token first
    n_cat, n_dog = len(cat.split()), len(dog.split())
    assert torch.allclose(context[0, 1:1 + n_cat], context[1, 2 + n_dog:2 + n_dog + n_cat], atol=1e-5)
    assert torch.allclose(context[1, 1:1 + n_dog], context[0, 2 + n_cat:2 + n_cat + n_dog], atol=1e-5)
    whole = latent.build_latent_denoiser(replace(recipe, read_clauses=False), "crossattn").eval()
    context, _ = whole.encode_prompt(ids)  # one sentence: the same words read differently after "and"
    assert not torch.allclose(context[0, 1:1 + n_cat], context[1, 2 + n_dog:2 + n_dog + n_cat], atol=1e-3)
