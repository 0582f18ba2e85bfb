"""The course's DiT and MMDiT (chapter 14): the same weights give diffusers' DiTTransformer2DModel output; shapes, patches, adaLN-Zero."""

from __future__ import annotations

import pytest
import torch

from course_lib.models.dit import DiT, DiTConfig, patchify, sincos_2d, unpatchify

diffusers = pytest.importorskip("diffusers")


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Every weight random (zero-init would make the output 0 and the comparison empty)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _to_diffusers(model: DiT) -> torch.nn.Module:
    """diffusers' DiTTransformer2DModel of the same size, holding ``model``'s weights."""
    from diffusers import DiTTransformer2DModel

    cfg = model.config
    ref = DiTTransformer2DModel(num_attention_heads=cfg.heads, attention_head_dim=cfg.width // cfg.heads,
                                in_channels=cfg.in_channels, num_layers=cfg.depth, sample_size=cfg.image_size,
                                patch_size=cfg.patch_size, num_embeds_ada_norm=cfg.num_classes, norm_eps=1e-6).eval()
    p, d, c = cfg.patch_size, cfg.width, cfg.in_channels
    sd = {"pos_embed.proj.weight": model.patch_embed.weight.reshape(d, p, p, c).permute(0, 3, 1, 2),
          "pos_embed.proj.bias": model.patch_embed.bias,
          "proj_out_1.weight": model.final.ada.weight, "proj_out_1.bias": model.final.ada.bias,
          "proj_out_2.weight": model.final.linear.weight, "proj_out_2.bias": model.final.linear.bias}
    for i, block in enumerate(model.blocks):
        pre = f"transformer_blocks.{i}."
        pairs = {"norm1.emb.timestep_embedder.linear_1": model.time_embed.linear_1,  # diffusers: one copy per block
                 "norm1.emb.timestep_embedder.linear_2": model.time_embed.linear_2, "norm1.linear": block.ada,
                 "attn1.to_q": block.attn.to_q, "attn1.to_k": block.attn.to_k, "attn1.to_v": block.attn.to_v,
                 "attn1.to_out.0": block.attn.to_out, "ff.net.0.proj": block.mlp.fc1, "ff.net.2": block.mlp.fc2}
        for name, lin in pairs.items():
            sd[pre + name + ".weight"], sd[pre + name + ".bias"] = lin.weight, lin.bias
        sd[pre + "norm1.emb.class_embedder.embedding_table.weight"] = model.class_embed.weight
    missing, unexpected = ref.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
    assert not unexpected and not [k for k in missing if not k.endswith("pos_embed")], (missing, unexpected)
    return ref


@pytest.mark.parametrize("size,patch,channels", [(16, 2, 4), (32, 4, 1)])
def test_dit_matches_diffusers(size: int, patch: int, channels: int) -> None:
    torch.manual_seed(0)
    model = DiT(DiTConfig(image_size=size, in_channels=channels, patch_size=patch, width=64, depth=3, heads=4,
                          num_classes=10)).eval()
    _randomise(model)
    ref = _to_diffusers(model)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, channels, size, size, generator=g)
    t = torch.tensor([0, 10, 250, 500, 999])
    y = torch.tensor([0, 3, 9, 5, 1])
    with torch.no_grad():
        ours = model(x, t, cond=y)
        theirs = ref(x, timestep=t, class_labels=y).sample
        # "no class" (−1) is diffusers' extra row, index num_classes
        ours_null = model(x, t, cond=torch.full((5,), -1))
        theirs_null = ref(x, timestep=t, class_labels=torch.full((5,), 10)).sample
    assert ours.shape == x.shape
    assert ours.abs().mean() > 0.1  # a real output, not the zero of an untrained DiT
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours_null, theirs_null, atol=1e-4, rtol=1e-4)


def test_position_embedding_matches_diffusers() -> None:
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    for dim, grid in ((64, 8), (96, 4)):
        torch.testing.assert_close(sincos_2d(dim, grid), get_2d_sincos_pos_embed(dim, grid, base_size=grid).float())


def test_patchify_roundtrip_and_layout() -> None:
    x = torch.randn(2, 3, 8, 12)
    tokens = patchify(x, 4)  # (2, 6, 48)
    assert tokens.shape == (2, 6, 48)
    torch.testing.assert_close(unpatchify(tokens, 4, 3, height=2), x)
    # token 1 is the patch in row 0, column 1; its first numbers are that patch's top-left pixel, all channels
    torch.testing.assert_close(tokens[:, 1, :3], x[:, :, 0, 4])
    with pytest.raises(ValueError, match="patches"):
        patchify(torch.randn(1, 1, 6, 6), 4)


def test_adaln_zero_starts_as_identity_and_outputs_zero() -> None:
    torch.manual_seed(0)
    model = DiT(DiTConfig(image_size=8, in_channels=1, patch_size=2, width=32, depth=2, heads=2, num_classes=3))
    h, c = torch.randn(2, 16, 32), torch.randn(2, 32)
    torch.testing.assert_close(model.blocks[0](h, c), h, atol=0, rtol=0)
    assert model(torch.randn(2, 1, 8, 8), torch.tensor([3, 7]), cond=torch.tensor([0, -1])).abs().max() == 0
    plain = DiT(DiTConfig(image_size=8, in_channels=1, patch_size=2, width=32, depth=2, heads=2, zero_init=False))
    assert plain(torch.randn(2, 1, 8, 8), torch.tensor([3, 7])).abs().max() > 0


def test_dit_rejects_bad_inputs() -> None:
    model = DiT(DiTConfig(image_size=8, in_channels=1, patch_size=2, width=32, depth=1, heads=2, num_classes=3))
    with pytest.raises(ValueError, match="x_t"):
        model(torch.randn(2, 1, 6, 6), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="cond"):
        model(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]), cond=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="patch_size"):
        DiTConfig(image_size=10, patch_size=4)


# ----------------------------------------------------------------------------- MMDiT
def _mmdit():
    from course_lib.models.mmdit import MMDiT, MMDiTConfig
    from course_lib.scenes import MAX_SCENE_PROMPT_LENGTH, SCENE_VOCAB

    torch.manual_seed(0)
    return MMDiT(MMDiTConfig(latent_size=8, in_channels=4, patch_size=2, width=32, depth=2, heads=2,
                             vocab_size=len(SCENE_VOCAB), max_length=MAX_SCENE_PROMPT_LENGTH,
                             clause_separator=SCENE_VOCAB.index("and")))


def test_mmdit_shapes_maps_and_empty_prompt() -> None:
    from course_lib.scenes import scene_tokenize

    model = _mmdit()
    _randomise(model, 3)
    ids = scene_tokenize(["a dog in a green hat on the left and a cat with no hat on the right", "a cat on the left"])
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        out = model(x, torch.tensor([100.0, 900.0]), cond=ids)
        for b in model.blocks:
            b.keep_maps = True
        again = model(x, torch.tensor([100.0, 900.0]), cond=ids)  # the explicit softmax path
    assert out.shape == x.shape
    torch.testing.assert_close(out, again, atol=1e-4, rtol=1e-4)
    maps = model.blocks[0].maps  # (B, heads, 16 patches, 1 + 24 words)
    assert maps.shape == (2, 2, 16, 25)
    assert float(maps[1, :, :, 6:].abs().max()) == 0.0  # start + "a cat on the left": padding gets no attention
    assert float(maps[1, :, :, :6].min()) > 0.0
    # a row of −1 (classifier-free guidance's "no condition") is the empty prompt
    with torch.no_grad():
        for b in model.blocks:
            b.keep_maps = False
        torch.testing.assert_close(model(x, 5.0, cond=torch.full((2, 24), -1)), model(x, 5.0, cond=None))
    assert model.blocks[0].text.to_q is not model.blocks[0].image.to_q  # separate weights per modality


def test_mmdit_words_change_the_picture_and_pictures_change_the_words() -> None:
    """Joint attention runs both ways: the text stream reads the patches (unlike cross-attention)."""
    from course_lib.scenes import scene_tokenize

    model = _mmdit()
    _randomise(model, 4)
    ids = scene_tokenize(["a dog on the left", "a cat on the left"])
    x = torch.randn(1, 4, 8, 8).expand(2, -1, -1, -1)
    with torch.no_grad():
        out = model(x, 500.0, cond=ids)
        words, mask = model.embed_words(model.prompt_ids(ids, 2, x.device))
        c = model.time_embed(torch.tensor([500.0, 500.0]))
        patches = model.patch_embed(patchify(x, 2)) + model.pos_embed
        w1, _ = model.blocks[0](words, patches, c, mask)
        w2, _ = model.blocks[0](words, patches + torch.randn(patches.shape), c, mask)  # other patches
    assert (out[0] - out[1]).abs().max() > 1e-3
    assert (w1 - w2).abs().max() > 1e-3


def test_condition_dropout_objective() -> None:
    from course_lib.flow import FlowMatching
    from course_lib.painters import ConditionDropout

    seen = []

    def model(x, t, cond=None):
        seen.append(cond.clone())
        return torch.zeros_like(x)

    objective = ConditionDropout(FlowMatching(), 0.5)
    ids = torch.ones(64, 24, dtype=torch.long)
    loss = objective.loss(model, torch.randn(64, 4, 2, 2), ids, torch.Generator().manual_seed(0))
    dropped = (seen[0] == -1).all(1)
    assert 10 < int(dropped.sum()) < 54 and bool((seen[0][~dropped] == 1).all()) and loss > 0
    assert objective.identity()["cond_drop_prob"] == 0.5 and objective.identity()["objective"] == "flow_matching"


def test_race_budget_and_exercises(monkeypatch: pytest.MonkeyPatch) -> None:
    from course_lib.exercises.transformers import (
        check_patchify, check_untrained_dit, solution_patchify, solution_unpatchify, solution_untrained_dit,
    )
    from course_lib.painters import DIGITS_BUDGET_SECONDS, STEP_SECONDS, race_steps

    monkeypatch.delenv("COURSE_PROFILE", raising=False)  # the cpu recipe, not the test suite's smoke override
    for (family, size), seconds in STEP_SECONDS.items():
        assert abs(race_steps("cpu", family, size) * seconds - DIGITS_BUDGET_SECONDS) < 0.05 * DIGITS_BUDGET_SECONDS
    assert check_patchify(solution_patchify, solution_unpatchify)
    assert check_untrained_dit(solution_untrained_dit())
    with pytest.raises(AssertionError):
        check_patchify(lambda x, p: solution_patchify(x.transpose(2, 3), p), solution_unpatchify)
    with pytest.raises(AssertionError):
        check_untrained_dit(0.5)


def test_race_dit_recipe(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Issue 27: the race's DiT starts its class embedding at N(0, 1) and trains at lr 5e-3 predicting x₀;
    the U-Net keeps the course's recipe (v-prediction, lr 2e-3)."""
    from course_lib.painters import dit_digits_config, race_model, race_train_config

    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    torch.manual_seed(0)
    std = float(DiT(dit_digits_config("cpu")).class_embed.weight.detach().std())
    assert 0.9 < std < 1.1
    assert float(DiT(DiTConfig(num_classes=10)).class_embed.weight.detach().std()) < 0.03  # DiT's own 0.02 by default
    dit, unet = race_train_config("cpu", "dit", "base"), race_train_config("cpu", "unet", "base")
    assert (dit.lr, dit.prediction_type) == (5e-3, "sample")
    assert (unet.lr, unet.prediction_type) == (2e-3, "v_prediction")
    model, _ = race_model("dit", "base", "smoke", progress=False, run_dir=tmp_path)
    assert model.prediction_type == "sample"
    with pytest.raises(ValueError):
        DiTConfig(label_init_std=-1.0)
