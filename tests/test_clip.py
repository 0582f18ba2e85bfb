"""Chapter 13: CLIP's loss, its recipe and training data, zero-shot reading, the CLIP score, negative prompts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.clip import (
    CLIP_SCENES,
    ContrastiveObjective,
    all_scene_rows,
    clip_loss,
    clip_model,
    clip_recipe,
    clip_score,
    held_out_scenes,
    random_captions,
    retrieval,
    zero_shot_accuracy,
)
from course_lib.exercises.clip import (
    check_blind_clip_loss,
    check_clip_loss,
    solution_blind_clip_loss,
    solution_clip_loss,
)
from course_lib.guidance import cfg_combine, cfg_model, null_condition
from course_lib.models.clip import CLIP, CLIPConfig
from course_lib.negative_prompts import negative_cfg_model, weighted_cfg_model
from course_lib.registry import card, obtain
from course_lib.scenes import (
    HELD_OUT,
    held_out_mask,
    make_scenes,
    parse_scene_prompt,
    scene_tokenize,
)
from course_lib.training import TrainConfig, train


# ----------------------------------------------------------------------------- the loss
def test_clip_loss_is_symmetric_and_the_mean_of_both_cross_entropies():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 6, generator=g) * 3
    rows = -torch.log_softmax(logits, dim=1).diagonal().mean()  # picture → caption
    cols = -torch.log_softmax(logits, dim=0).diagonal().mean()  # caption → picture
    assert not torch.isclose(rows, cols)  # the batch tells the directions apart
    assert torch.allclose(clip_loss(logits), (rows + cols) / 2, atol=1e-6)
    assert torch.allclose(clip_loss(logits), clip_loss(logits.T), atol=1e-6)  # swapping the roles changes nothing
    labels = torch.arange(6)
    assert torch.allclose(clip_loss(logits), 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)))
    assert torch.isclose(clip_loss(torch.zeros(128, 128)), torch.tensor(math.log(128)))  # a blind model: log N
    assert float(clip_loss(torch.eye(4) * 50)) < 1e-6  # a perfect, confident model: 0
    with pytest.raises(ValueError, match="square"):
        clip_loss(torch.zeros(3, 4))


def test_the_exercise_checks_accept_the_solution_and_refuse_one_direction_only():
    assert check_clip_loss(solution_clip_loss)
    assert check_clip_loss(lambda i, t, tau: None) is False  # not tried yet

    def one_way(img, txt, tau):
        logits = img @ txt.T / tau
        return F.cross_entropy(logits, torch.arange(len(logits)))

    with pytest.raises(AssertionError, match="clip loss"):
        check_clip_loss(one_way)
    with pytest.raises(AssertionError, match="clip loss"):
        check_clip_loss(lambda i, t, tau: solution_clip_loss(i, t, 1.0))  # forgot the temperature
    assert check_blind_clip_loss(solution_blind_clip_loss(128), 128)
    with pytest.raises(AssertionError):
        check_blind_clip_loss(1.0 / 128, 128)


# ----------------------------------------------------------------------------- the network and its temperature
def test_encoders_give_unit_vectors_and_the_temperature_is_learned():
    torch.manual_seed(0)
    model = CLIP(clip_recipe("smoke").config)
    data = make_scenes(32, seed=5)
    img, txt = model.encode_image(data.images), model.encode_text(data.captions[:5])
    assert img.shape == (32, 16) and txt.shape == (5, 16)
    assert torch.allclose(img.norm(dim=-1), torch.ones(32), atol=1e-5) and torch.allclose(txt.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert math.isclose(model.temperature, 0.07, rel_tol=1e-5)
    loss = ContrastiveObjective().loss(model, data.images[:16], data.attributes[:16], torch.Generator().manual_seed(0))
    loss.backward()
    assert model.logit_scale.grad is not None and float(model.logit_scale.grad.abs()) > 0
    before = float(model.logit_scale.detach())
    result = train(model, ContrastiveObjective(), (data.images, data.attributes),
                   TrainConfig(steps=5, batch_size=16, lr=1e-2, warmup=1, checkpoint_every=0), progress=False)
    assert float(result.model.logit_scale.detach()) != before  # τ moved with the encoders
    with pytest.raises(ValueError, match="list of strings"):
        model.encode_text("a cat with no hat on the left")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.encode_text(["a horse on the left"])
    with pytest.raises(ValueError, match="images must be"):
        model.encode_image(torch.zeros(2, 3, 32, 32))


def test_the_text_encoder_reads_each_clause_on_its_own():
    torch.manual_seed(0)
    enc = CLIP(CLIPConfig(text_layers=2)).text_encoder
    a, b = "a cat in a red hat on the left", "a dog with no hat on the right"
    words = enc.words(scene_tokenize([f"{a} and {b}", a]))
    n = len(a.split())
    assert torch.allclose(words[0, :n], words[1, :n], atol=1e-5)  # the first clause means the same alone or not


# ----------------------------------------------------------------------------- the data
def test_held_out_compositions_are_never_in_the_training_data_and_captions_vary(monkeypatch):
    _, rows = CLIP_SCENES.data("smoke")
    assert len(rows) == clip_recipe("smoke").num_images and not held_out_mask(rows).any()
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert clip_recipe("cpu").num_images >= 1000 and CLIP_SCENES.identity("cpu")["data_seed"] == 11
    caps = random_captions(rows.repeat(8, 1), torch.Generator().manual_seed(0))
    for slot, animal, colour in HELD_OUT:  # no caption drawn for training names a held-out composition
        assert not any(f"{animal} in a {colour} hat on the {slot}" in c or f"{animal} wearing a {colour} hat on the {slot}" in c
                       for c in caps)
    assert len(set(caps)) > len(set(map(tuple, rows.tolist())))  # several phrasings of the same scene
    for c, r in zip(caps, rows.repeat(8, 1)):  # every phrasing still says the scene
        asked = parse_scene_prompt(c)
        assert bool(((asked == r) | (asked == -1)).all())
    composed = held_out_scenes(4, only_held_out=True)
    assert held_out_mask(composed.attributes).all()
    assert len(all_scene_rows()) == 672 and len({tuple(r) for r in all_scene_rows().tolist()}) == 672


# ----------------------------------------------------------------------------- a tiny trained model reads scenes
def test_a_tiny_trained_clip_reads_held_out_scenes_zero_shot():
    torch.manual_seed(0)
    data = make_scenes(600, seed=11)
    model = CLIP(CLIPConfig(widths=(8, 16, 32), hidden=64, embed_dim=32, text_width=32, text_layers=1, text_heads=2))
    result = train(model, ContrastiveObjective(), (data.images, data.attributes),
                   TrainConfig(steps=150, batch_size=64, lr=3e-3, warmup=20, checkpoint_every=0, ema_decay=0.9),
                   progress=False)
    model = result.ema_model.eval()
    test = held_out_scenes(100)
    read = zero_shot_accuracy(model, test.images, test.attributes)
    animals = (read["per_column"][0] + read["per_column"][3]) / 2
    assert animals > 0.9, read["per_column"]  # chance: 1/3
    assert read["all"] > 0.5, read  # every attribute at once among 672 captions (chance 0.0015)
    assert retrieval(model, test.images, test.attributes)["r1"] > 0.6  # untrained: 0


# ----------------------------------------------------------------------------- the public API and the shipped model
def test_clip_model_and_clip_score_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    model, info = clip_model("smoke", progress=False)
    assert info["steps"] == clip_recipe("smoke").train.steps and not model.training
    data = make_scenes(4, seed=3)
    s = clip_score(model, data.images, data.captions)
    assert s.shape == (4,) and bool(((s >= 0) & (s <= 100)).all())
    cos = (model.encode_image(data.images) * model.encode_text(data.captions)).sum(-1)
    assert torch.allclose(s, 100 * cos.clamp(min=0), atol=1e-4)
    with pytest.raises(ValueError, match="one prompt per picture"):
        clip_score(model, data.images, data.captions[:2])
    again, info2 = clip_model("smoke", progress=False)
    assert info2["cached"] and all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_the_shipped_cpu_clip_verifies_and_its_card_meets_the_targets(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    held = card(CLIP_SCENES)
    assert held["identity"] == CLIP_SCENES.identity_for("cpu")
    assert held["scores"]["zero_shot_accuracy"] >= 0.9 and held["scores"]["retrieval_r1"] >= 0.5
    assert held["info"]["temperature"] < 0.07  # learned: sharper than where it started
    model, info = clip_model("cpu", progress=False)
    assert info["shipped"] and math.isclose(info["temperature"], held["info"]["temperature"], rel_tol=1e-2)
    test = held_out_scenes(64)
    assert zero_shot_accuracy(model, test.images, test.attributes)["all"] >= 0.9


# ----------------------------------------------------------------------------- negative prompts and weighting
def _toy_denoiser(x_t, t, cond=None):
    """A denoiser whose output depends on the prompt: x_t scaled by the mean of the ids (−1 rows: the empty prompt)."""
    ids = torch.zeros(len(x_t), 1) if cond is None else cond.clamp(min=0).float().mean(1, keepdim=True)
    return x_t * (1 + ids[:, :, None, None]) + t.float()[:, None, None, None] / 1000


def test_a_negative_prompt_replaces_the_unconditional_branch():
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 2, 4, 4, generator=g), torch.tensor([10, 500, 900])
    cond = scene_tokenize(["a cat in a hat on the left"] * 3)
    neg = scene_tokenize("a cat in a red hat on the left")
    want = cfg_combine(_toy_denoiser(x, t, neg[None].expand(3, -1)), _toy_denoiser(x, t, cond), 3.0)
    got = negative_cfg_model(_toy_denoiser, 3.0, neg)(x, t, cond=cond)
    assert torch.allclose(got, want, atol=1e-6)
    plain = cfg_model(_toy_denoiser, 3.0)(x, t, cond=cond)
    assert not torch.allclose(got, plain)
    assert torch.allclose(negative_cfg_model(_toy_denoiser, 3.0, null_condition(neg))(x, t, cond=cond), plain, atol=1e-6)
    # the negative prompt is prompt weighting with w_c = s and w_n = 1 − s
    both = torch.stack([cond, neg[None].expand(3, -1)], 1)  # (B, 2, L)
    assert torch.allclose(weighted_cfg_model(_toy_denoiser, (3.0, -2.0))(x, t, cond=both), got, atol=1e-5)
    with pytest.raises(ValueError, match="negative"):
        negative_cfg_model(_toy_denoiser, 3.0, neg[None].expand(2, -1))(x, t, cond=cond)
    with pytest.raises(ValueError, match=r"\(B, K, L\)"):
        weighted_cfg_model(_toy_denoiser, (3.0, -2.0))(x, t, cond=cond)


def test_negative_prompt_on_chapter_11s_model_is_its_cfg_with_the_empty_prompt(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    from course_lib.latent.pipeline import load_pipeline

    net = load_pipeline("cpu", progress=False).denoiser
    g = torch.Generator().manual_seed(1)
    z, t = torch.randn(2, 4, 16, 16, generator=g), torch.tensor([300, 700])
    cond = scene_tokenize(["a cat in a hat on the left"] * 2)
    with torch.no_grad():
        plain = cfg_model(net, 3.0)(z, t, cond=cond)
        empty = negative_cfg_model(net, 3.0, scene_tokenize(""))(z, t, cond=cond)  # the empty prompt, all padding
        negative = negative_cfg_model(net, 3.0, scene_tokenize("a cat in a red hat on the left"))(z, t, cond=cond)
    assert torch.allclose(plain, empty, atol=1e-4)
    assert (negative - plain).abs().mean() > 1e-3


# ----------------------------------------------------------------------------- the real CLIP cell, offline
def test_the_real_clip_cell_says_why_it_cannot_run_and_reads_scenes_with_a_tiny_model():
    from course_lib.real_clip import SKIPPED, read_with_real_clip

    data = make_scenes(24, seed=4)
    line = read_with_real_clip(False, data.images, data.attributes, profile="cpu")
    assert isinstance(line, str) and line.startswith(SKIPPED) and "real_clip=False" in line
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPConfig(
        text_config={"vocab_size": 100, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 32},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8}, projection_dim=16)
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()

    def tokenizer(captions, padding=True, return_tensors="pt"):  # words → ids, padded
        ids = [[1 + sum(map(ord, w)) % 97 for w in c.split()] for c in captions]
        width = max(map(len, ids))
        return transformers.BatchEncoding({"input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
                                           "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])})

    read = read_with_real_clip(True, data.images, data.attributes, profile="cpu", model=model, tokenizer=tokenizer)
    assert set(read) >= {"animal, each half alone", "background", "hat colour, each half alone"}
    assert all(0.0 <= v <= 1.0 for v in read.values())


# ----------------------------------------------------------------------------- Stable Diffusion's way and unCLIP's
def test_the_frozen_clip_denoiser_reads_clips_words_and_never_trains_them(tmp_path, monkeypatch):
    from course_lib.clip_conditioning import FROZEN_CLIP_DENOISER, frozen_clip_pipeline

    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    pipe, info = frozen_clip_pipeline("smoke", progress=False)
    clip, _ = clip_model("smoke", progress=False)
    net = pipe.denoiser
    assert info["steps"] == 3 and not any(p.requires_grad for p in net.clip_text.parameters())
    assert all(torch.equal(a, b) for a, b in zip(net.clip_text.state_dict().values(), clip.text_encoder.state_dict().values()))
    ids = scene_tokenize(["a cat in a red hat on the left", ""])
    context, mask = net.encode_prompt(ids)
    assert torch.allclose(context[0, 1:8], clip.text_encoder.words(ids[:1])[0, :7], atol=1e-6)
    assert mask[1].sum() == 1  # the empty prompt: the start vector alone
    out = net(torch.randn(2, *pipe.latent_shape), torch.tensor([10, 500]), cond=torch.full_like(ids, -1))
    assert out.shape == (2, *pipe.latent_shape) and torch.isfinite(out).all()
    assert FROZEN_CLIP_DENOISER.identity_for("smoke")["clip"] == CLIP_SCENES.identity_for("smoke")


def test_unclip_pieces_run_and_a_nan_caption_is_the_empty_one(tmp_path, monkeypatch):
    from course_lib.models.clip import PriorConfig, VectorPrior, decoder_condition
    from course_lib.scenes import scene_tokenize
    from course_lib.unclip import DECODER_TOKENS, load_unclip, prior_sample, variations, walk

    torch.manual_seed(0)
    prior = VectorPrior(PriorConfig(8, 8, hidden=16, num_blocks=1))
    x, t = torch.randn(3, 8), torch.tensor([1, 2, 3])
    assert torch.allclose(prior(x, t, torch.full((3, 8), float("nan"))), prior(x, t, None), atol=1e-6)
    with pytest.raises(ValueError, match="CLIP vectors"):
        prior(torch.randn(3, 4), t)
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    u, _ = load_unclip("smoke", progress=False)
    text = u.clip.encode_text(["a cat in a red hat on the left"] * 2).cpu()
    drawn = prior_sample(u, text, num_steps=3)
    assert drawn.shape == (2, 16) and torch.allclose(drawn.norm(dim=-1), torch.ones(2), atol=1e-5)
    scenes = make_scenes(2, seed=1).images
    assert variations(u, scenes[0], 3).shape == (3, 3, 64, 64) and walk(u, scenes[0], scenes[1], 3).shape == (3, 3, 64, 64)
    dec, z, t2 = u.decoder, torch.randn(2, *u.autoencoder.config.latent_shape), torch.tensor([10, 500])
    d, ids = u.clip.config.embed_dim, scene_tokenize(["a cat in a red hat on the left"] * 2)
    none = torch.full((2, d), float("nan"))
    vectors, read = dec.split_condition(decoder_condition(torch.cat([drawn[:1], none[:1]]),
                                                          torch.cat([ids[:1], torch.full_like(ids[:1], -1)])), 2)
    assert torch.equal(read[0], ids[0]) and (read[1] == -1).all()
    context, mask = dec.encode_condition(vectors, read)
    L, words = dec.config.text.max_length, int((ids[0] != 0).sum())
    assert context.shape == (2, 1 + L + DECODER_TOKENS, dec.config.text.out_dim)
    assert mask.sum(1).tolist() == [1 + words + DECODER_TOKENS, 1]  # the start, the words, the vector's tokens
    with torch.no_grad():
        neither = decoder_condition(None, None, embed_dim=d, batch_size=2)
        assert torch.allclose(dec(z, t2, cond=neither), dec(z, t2), atol=1e-6)  # NaN rows: no vector, no caption
        vector_only = dec(z, t2, cond=decoder_condition(drawn * 4, None))
        assert not torch.allclose(vector_only, dec(z, t2), atol=1e-4)  # a vector is read
        assert not torch.allclose(dec(z, t2, cond=decoder_condition(drawn * 4, ids)), vector_only, atol=1e-4)  # and words
    with pytest.raises(ValueError, match="picture vector and a caption"):
        dec(z, t2, cond=torch.zeros(2, 3))


def test_the_decoder_drops_the_vector_and_the_caption_each_on_its_own():
    from course_lib.latent.pipeline import LATENT_SCHEDULE
    from course_lib.models.clip import decoder_condition
    from course_lib.schedules import make_schedule
    from course_lib.unclip import CAPTION_DROP, VECTOR_DROP, DecoderDropout

    seen: list[torch.Tensor] = []

    def spy(x_t, t, cond):
        seen.append(cond)
        return torch.zeros_like(x_t)

    n, d = 4000, 4
    cond = decoder_condition(torch.ones(n, d), torch.ones(n, 24, dtype=torch.long))
    DecoderDropout(make_schedule(LATENT_SCHEDULE), d).loss(spy, torch.zeros(n, 1, 2, 2), cond, torch.Generator().manual_seed(0))
    vector, caption = torch.isnan(seen[0][:, :d]).all(1).float(), torch.isnan(seen[0][:, d:]).all(1).float()
    assert abs(float(vector.mean()) - VECTOR_DROP) < 0.02 and abs(float(caption.mean()) - CAPTION_DROP) < 0.03
    assert abs(float((vector * caption).mean()) - VECTOR_DROP * CAPTION_DROP) < 0.015  # independent draws
    assert not torch.isnan(seen[0][(vector + caption) == 0]).any()  # what is kept is untouched


def test_the_decoder_starts_as_chapter_11s_painter(tmp_path, monkeypatch):
    from course_lib.latent.pipeline import autoencoder_model, latent_model
    from course_lib.models.clip import decoder_condition
    from course_lib.scenes import scene_tokenize
    from course_lib.unclip import _decoder_start, build_decoder

    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    ae, ae_info = autoencoder_model("smoke", progress=False)
    base, _, _ = latent_model("smoke", "crossattn", ae=ae, scale_factor=ae_info["scale_factor"], progress=False)
    dec = build_decoder("smoke")
    dec.load_state_dict(_decoder_start("smoke"))
    z, t = torch.randn(2, *ae.config.latent_shape), torch.tensor([10, 900])
    ids = scene_tokenize(["a cat in a red hat on the left", "a dog with no hat on the right"])
    with torch.no_grad():
        assert torch.allclose(dec.eval()(z, t), base.eval()(z, t, cond=torch.full((2, 24), -1)), atol=1e-5)
        caption_only = decoder_condition(None, ids, embed_dim=dec.embed_dim)
        assert torch.allclose(dec(z, t, cond=caption_only), base(z, t, cond=ids), atol=1e-5)


def test_the_shipped_painters_verify_and_their_cards_hold_their_scores(monkeypatch):
    from course_lib.clip_conditioning import FROZEN_CLIP_DENOISER
    from course_lib.unclip import DECODER, PRIOR

    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    for record in (FROZEN_CLIP_DENOISER, PRIOR, DECODER):
        held = card(record)
        assert held["identity"] == record.identity_for("cpu"), record.name
        assert held["scores"], record.name
    assert card(PRIOR)["scores"]["prior_reads_as_asked"] >= 0.9
    decoder = card(DECODER)["scores"]  # issue 26: unCLIP's held-out prompt accuracy ≥ 0.8, the caption carrying part
    assert decoder["prompt_accuracy_held_out"] >= 0.8 > decoder["prompt_accuracy_held_out_vector_only"]
    prior, info = obtain(PRIOR, "cpu", progress=False)
    assert info["shipped"] and not prior.training
