"""Masked diffusion for text (chapter 16): the forward masking, the ELBO weight and loss, the samplers,
infilling, the next-word baseline, the caption corpus and the recipes' identities."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from course_lib.autoregressive import NextTokenObjective, sample_autoregressive, sequence_nll, shift_right
from course_lib.caption_text import (
    MASK_ID,
    caption_corpus,
    caption_language,
    caption_scores,
    decode_captions,
    encode_captions,
    parse_or_none,
)
from course_lib.models.caption_transformer import CaptionTransformer, CaptionTransformerConfig
from course_lib.scenes import held_out_mask, parse_scene_prompt
from course_lib.text_diffusion import (
    MaskedDiffusionObjective,
    elbo_weight,
    infill,
    keep_probability,
    kept_visible,
    mask_tokens,
    mask_words,
    masked_nelbo,
    sample_masked,
    unmask_step,
)
from course_lib.training import TrainConfig, train


class FixedLogits(nn.Module):
    """Ignores the context: the same logits (L, V) at every call (a "context-free" model)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, ids, t=None, cond=None):
        return self.logits.expand(ids.shape[0], -1, -1)


class JointOracle(nn.Module):
    """The exact conditionals p(x₀ˡ | visible tokens) of a joint table over L = 2 positions and V words."""

    def __init__(self, joint: torch.Tensor, mask_id: int) -> None:
        super().__init__()
        self.joint, self.mask_id = joint, mask_id  # (V, V)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, ids, t=None, cond=None):
        out = []
        for a, b in ids.tolist():
            p0 = self.joint.sum(1) if b == self.mask_id else self.joint[:, b] / self.joint[:, b].sum()
            p1 = self.joint.sum(0) if a == self.mask_id else self.joint[a] / self.joint[a].sum()
            out.append(torch.stack([p0, p1]).log())
        return torch.stack(out)  # (B, 2, V)


# ----------------------------------------------------------------------------- forward process and weight
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_forward_masking_marginals(schedule):
    x0 = torch.randint(0, MASK_ID, (4000, 24))
    for t in (0.1, 0.5, 0.9):
        x_t, masked = mask_tokens(x0, torch.full((4000,), t), torch.Generator().manual_seed(3), schedule=schedule)
        want = 1 - float(keep_probability(t, schedule))
        share = masked.float().mean().item()
        assert abs(share - want) < 4 * math.sqrt(want * (1 - want) / masked.numel())
        assert bool((x_t[masked] == MASK_ID).all()) and bool((x_t[~masked] == x0[~masked]).all())
        per_position = masked.float().mean(0)  # each position independently, the same chance
        assert float((per_position - want).abs().max()) < 5 * math.sqrt(want * (1 - want) / 4000)
    assert float(keep_probability(0.0, schedule)) == pytest.approx(1.0) and float(keep_probability(1.0, schedule)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_elbo_weight_is_minus_alpha_prime_over_one_minus_alpha(schedule):
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    slope = (keep_probability(t + h, schedule) - keep_probability(t - h, schedule)) / (2 * h)
    torch.testing.assert_close(elbo_weight(t, schedule), -slope / (1 - keep_probability(t, schedule)), rtol=1e-6, atol=0)
    if schedule == "linear":
        torch.testing.assert_close(elbo_weight(t, schedule), 1 / t)


def _exact_nelbo(model: nn.Module, x0: torch.Tensor, schedule: str, mask_id: int, n: int = 4000) -> float:
    """∫ w(t) E_q[Σ_masked −log p] dt, the expectation over masks enumerated exactly, the integral by midpoints."""
    L = x0.shape[1]
    patterns = torch.tensor(list(itertools.product([0, 1], repeat=L)), dtype=torch.bool)  # (2^L, L)
    x_t = torch.where(patterns, torch.full_like(patterns, mask_id, dtype=torch.long), x0.expand(len(patterns), -1))
    with torch.no_grad():
        ce = nn.functional.cross_entropy(model(x_t).transpose(1, 2), x0.expand(len(patterns), -1), reduction="none")
    per_pattern = (ce * patterns).sum(1).double()  # (2^L,)
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    m = 1 - keep_probability(t, schedule)  # (n,) mask probability
    k = patterns.sum(1).double()
    prob = m[:, None] ** k * (1 - m[:, None]) ** (L - k)  # (n, 2^L)
    return float((elbo_weight(t, schedule) * (prob * per_pattern).sum(1)).mean())


def test_nelbo_does_not_depend_on_the_schedule_and_is_the_cross_entropy_for_a_context_free_model():
    torch.manual_seed(0)
    net = CaptionTransformer(CaptionTransformerConfig(num_words=5, max_length=3, width=16, num_layers=1, num_heads=2))
    x0 = torch.tensor([[1, 3, 0]])
    lin, cos = (_exact_nelbo(net, x0, s, 5) for s in ("linear", "cosine"))
    assert lin == pytest.approx(cos, rel=2e-3)
    fixed = FixedLogits(torch.randn(3, 5))
    want = float(nn.functional.cross_entropy(fixed.logits.detach(), x0[0], reduction="sum"))
    assert _exact_nelbo(fixed, x0, "linear", 5) == pytest.approx(want, rel=2e-3)
    estimate = masked_nelbo(fixed, x0.expand(64, -1), num_times=64).mean().item()  # the Monte-Carlo estimate agrees
    assert estimate == pytest.approx(want, rel=0.03)


@pytest.mark.parametrize("draw", ["time", "count"])
def test_the_training_loss_is_the_nelbo_per_token_on_average(draw):
    fixed = FixedLogits(torch.randn(24, MASK_ID))
    x0 = encode_captions(caption_corpus(64, seed=1))
    obj = MaskedDiffusionObjective(draw=draw)
    losses = [obj.loss(fixed, x0.float(), None, torch.Generator().manual_seed(i)).item() for i in range(300)]
    want = nn.functional.cross_entropy(fixed.logits.expand(64, -1, -1).transpose(1, 2), x0, reduction="none").sum(1).mean().detach() / 24
    assert sum(losses) / len(losses) == pytest.approx(want.item(), rel=0.03)
    assert MaskedDiffusionObjective("cosine", draw=draw).identity() != obj.identity()


def test_count_draw_equals_the_time_integral_for_a_network_that_reads_context():
    """∫ (1/t) P(pattern | t) dt = 1/(k·C(L, k)): the count form is the same bound, also when the network reads the words."""
    torch.manual_seed(0)
    net = CaptionTransformer(CaptionTransformerConfig(num_words=5, max_length=3, width=16, num_layers=1, num_heads=2))
    x0 = torch.tensor([[1, 3, 0]])
    obj = MaskedDiffusionObjective(draw="count", mask_id=5)
    with torch.no_grad():
        mc = torch.stack([obj.per_caption_count(net, x0.expand(300, -1), torch.Generator().manual_seed(i)) for i in range(20)])
    assert float(mc.mean()) == pytest.approx(_exact_nelbo(net, x0, "linear", 5), rel=0.02)


# ----------------------------------------------------------------------------- samplers
def test_ancestral_step_reveals_the_right_share_and_keeps_visible_tokens():
    fixed = FixedLogits(torch.zeros(24, MASK_ID))
    x_t, _ = mask_tokens(torch.randint(0, MASK_ID, (2000, 24)), torch.full((2000,), 0.8), torch.Generator().manual_seed(0))
    x_s = unmask_step(fixed(x_t), x_t, 0.8, 0.5, generator=torch.Generator().manual_seed(1))
    was = x_t == MASK_ID
    revealed = (was & (x_s != MASK_ID)).sum() / was.sum()
    assert float(revealed) == pytest.approx((0.5 - 0.2) / 0.8, abs=0.01)
    assert bool((x_s[~was] == x_t[~was]).all())


def test_random_remasking_with_as_many_steps_as_tokens_reveals_one_token_per_step():
    fixed = FixedLogits(torch.zeros(24, MASK_ID))
    x = torch.full((50, 24), MASK_ID)
    times = torch.linspace(1, 0, 25).tolist()
    g = torch.Generator().manual_seed(0)
    for k, (t, s) in enumerate(zip(times[:-1], times[1:])):
        x = unmask_step(fixed(x), x, t, s, remasking="random", start_masked=torch.full((50,), 24), generator=g)
        assert bool(((x == MASK_ID).sum(1) == 23 - k).all())


def test_confidence_step_reveals_the_most_confident_guesses():
    logits = torch.full((1, 6, 4), -5.0)
    confidence = torch.tensor([0.0, 4.0, 1.0, 3.0, 2.0, 5.0])  # position 5 visible below
    logits[0, torch.arange(6), 2] = confidence
    x_t = torch.tensor([[MASK_ID] * 5 + [1]])
    x_s = unmask_step(logits, x_t, 1.0, 0.6, remasking="confidence", temperature=0.0)  # 5 · 0.6 = 3 stay masked
    assert x_s.tolist() == [[MASK_ID, 2, MASK_ID, 2, MASK_ID, 1]]


@pytest.mark.parametrize("remasking", ["ancestral", "random", "confidence"])
@pytest.mark.parametrize("steps", [1, 5, 40])
def test_sampler_keeps_every_visible_token_and_leaves_no_mask(remasking, steps):
    torch.manual_seed(0)
    net = CaptionTransformer(CaptionTransformerConfig(width=16, num_layers=1, num_heads=2)).eval()
    ids = encode_captions(caption_corpus(32, seed=2))
    masked = mask_words(ids, 0.5, torch.Generator().manual_seed(4))
    assert bool(((masked == MASK_ID) <= (ids != 0)).all())  # only words are covered, the padding stays
    assert bool((masked == MASK_ID).any(1).all())  # at least one per caption
    out = infill(net, masked, num_steps=steps, remasking=remasking, generator=torch.Generator().manual_seed(5))
    assert bool(kept_visible(masked, out).all()) and not bool((out == MASK_ID).any())
    fresh = sample_masked(net, 8, num_steps=steps, remasking=remasking)
    assert fresh.shape == (8, 24) and not bool((fresh == MASK_ID).any())


def test_infill_with_an_oracle_restores_the_caption():
    target = encode_captions(["a dog in a green hat on the left and a cat with no hat on the right"])

    class Oracle(FixedLogits):
        pass

    oracle = Oracle(torch.where(nn.functional.one_hot(target[0], MASK_ID).bool(), 20.0, -20.0))
    masked = mask_words(target.expand(4, -1), 0.7, torch.Generator().manual_seed(0))
    for remasking in ("ancestral", "random", "confidence"):
        assert bool((infill(oracle, masked, num_steps=3, remasking=remasking) == target).all())


def test_many_small_steps_sample_the_joint_and_one_step_the_product_of_marginals():
    """The ancestral sampler with an exact denoiser draws the joint when tokens come one at a time; all at once
    (one step) it draws each position from its marginal, independently — the cost of parallel decoding."""
    joint = torch.tensor([[0.45, 0.05, 0.0], [0.05, 0.45, 0.0], [0.0, 0.0, 0.0]]) + 1e-9
    joint = joint / joint.sum()
    oracle = JointOracle(joint, mask_id=3)
    n = 3000
    independent = joint.sum(1)[:, None] * joint.sum(0)[None, :]
    for steps, remasking, want in ((200, "ancestral", joint), (1, "ancestral", independent), (2, "random", joint)):
        out = sample_masked(oracle, n, num_steps=steps, remasking=remasking, length=2, mask_id=3,
                            generator=torch.Generator().manual_seed(7))
        freq = torch.zeros(3, 3)
        for a, b in out.tolist():
            freq[a, b] += 1 / n
        assert float((freq - want).abs().max()) < 0.04, (steps, freq)


def test_row_caching_reads_each_caption_at_most_once_per_revealed_token():
    torch.manual_seed(0)
    net = CaptionTransformer(CaptionTransformerConfig(width=16, num_layers=1, num_heads=2)).eval()
    out, calls = sample_masked(net, 10, num_steps=500, return_calls=True)
    assert calls <= 10 * 24 and not bool((out == MASK_ID).any())


# ----------------------------------------------------------------------------- the next-word baseline
def test_causal_model_does_not_read_ahead_and_its_nll_matches_the_loss():
    torch.manual_seed(0)
    net = CaptionTransformer(CaptionTransformerConfig(width=16, num_layers=2, num_heads=2, causal=True)).eval()
    ids = encode_captions(caption_corpus(8, seed=3))
    changed = ids.clone()
    changed[:, 10:] = 5
    with torch.no_grad():
        torch.testing.assert_close(net(ids)[:, :10], net(changed)[:, :10])
        bidirectional = CaptionTransformer(CaptionTransformerConfig(width=16, num_layers=2, num_heads=2))
        assert not torch.allclose(bidirectional(ids)[:, :10], bidirectional(changed)[:, :10])
    loss = NextTokenObjective().loss(net, ids.float(), None, torch.Generator())
    assert float(sequence_nll(net, ids).mean() / 24) == pytest.approx(float(loss), rel=1e-5)
    assert shift_right(ids)[:, 0].eq(MASK_ID).all() and bool((shift_right(ids)[:, 1:] == ids[:, :-1]).all())
    prefix = encode_captions(["a cat in a red hat on the left"])[0, :8]
    out = sample_autoregressive(net, 4, prefix=prefix)
    assert bool((out[:, :8] == prefix).all()) and out.shape == (4, 24)


# ----------------------------------------------------------------------------- the corpus and its scores
def test_corpus_is_in_the_language_and_never_shows_the_held_out_combinations():
    caps = caption_corpus(3000, seed=0)
    language = caption_language()
    assert all(c in language for c in caps)
    rows = torch.stack([parse_scene_prompt(c) for c in caps])
    assert not bool(held_out_mask(rows).any())
    assert decode_captions(encode_captions(caps[:50])) == caps[:50]
    assert any(bool(held_out_mask(parse_scene_prompt(c)[None])) for c in language)  # but the language has them
    bad = encode_captions(["a cat with no hat on the left"])
    bad[0, 20] = 6  # a word after the padding
    assert decode_captions(bad) == [None]
    assert parse_or_none("a cat in a red hat") is None  # not placed
    lenient = "a cat red on the left on the left"  # parses (the parser is lenient) but no caption reads so
    assert parse_or_none(lenient) is not None and lenient not in language
    s = caption_scores(["a cat with no hat on the left", "a cat red on the left", None, "a dog in a green hat on the left"])
    assert (s["validity"], s["in_language"], s["held_out_share"]) == (0.75, 0.5, 0.25)


# ----------------------------------------------------------------------------- training and the recipes
def test_masked_diffusion_trains_through_the_one_loop_and_resumes_exactly(tmp_path):
    data = encode_captions(caption_corpus(256, seed=0)).float()
    cfg = TrainConfig(steps=6, batch_size=16, lr=1e-3, warmup=2, checkpoint_every=3)

    def net():
        torch.manual_seed(0)
        return CaptionTransformer(CaptionTransformerConfig(width=16, num_layers=1, num_heads=2))

    straight = train(net(), MaskedDiffusionObjective(), data, cfg, progress=False)
    from course_lib.callbacks import StopAfter

    train(net(), MaskedDiffusionObjective(), data, cfg, run_dir=tmp_path, progress=False, callback=StopAfter(steps=3))
    resumed = train(net(), MaskedDiffusionObjective(), data, cfg, run_dir=tmp_path, progress=False)
    assert resumed.losses == straight.losses
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):  # another objective's run is refused
        train(net(), MaskedDiffusionObjective("cosine"), data, cfg, run_dir=tmp_path, progress=False)


# ----------------------------------------------------------------------------- the exercises
def test_exercises_accept_the_solution_and_refuse_wrong_answers():
    from course_lib.exercises.text_diffusion import (
        check_stickers_left,
        check_unmask_step,
        solution_stickers_left,
        solution_unmask_step,
    )

    assert check_unmask_step(solution_unmask_step) is True
    assert check_unmask_step(lambda *a: None) is False
    with pytest.raises(AssertionError):  # revealing with chance s/t instead of (t − s)/t
        check_unmask_step(lambda x, w, u, t, s: torch.where((x == 25) & (u < s / t), w, x))
    with pytest.raises(AssertionError):  # overwriting visible words too
        check_unmask_step(lambda x, w, u, t, s: torch.where(u < (t - s) / t, w, x))
    assert check_stickers_left(solution_stickers_left(12, 0.5, 0.25)) is True
    with pytest.raises(AssertionError):
        check_stickers_left(3.0)
    # the exercise's rule is the library's ancestral step with the same draws
    x_t = torch.tensor([[25, 3, 25, 25]])
    words = torch.tensor([[7, 7, 8, 9]])
    u = torch.tensor([[0.1, 0.9, 0.6, 0.4]])
    assert solution_unmask_step(x_t, words, u, 0.8, 0.4).tolist() == [[7, 3, 25, 9]]


def test_recipes_are_registered_with_identities_that_tell_them_apart():
    from course_lib.caption_models import MASKED_CAPTIONS, NEXT_WORD_CAPTIONS
    from course_lib.registry import RECIPES

    assert RECIPES["masked_captions"] is MASKED_CAPTIONS and RECIPES["next_word_captions"] is NEXT_WORD_CAPTIONS
    a, b = MASKED_CAPTIONS.identity_for("smoke"), NEXT_WORD_CAPTIONS.identity_for("smoke")
    assert a != b and a["objective"]["loss"] == "masked_diffusion_nelbo" and b["objective"]["loss"] == "next_token_cross_entropy"
    assert a == MASKED_CAPTIONS.identity_for("smoke")  # deterministic: the same recipe, the same identity
    assert MASKED_CAPTIONS.identity_for("smoke") != MASKED_CAPTIONS.identity_for("cpu")
    # same size, same data, same steps and batch: only the reading rule and the loss differ
    ma, na = MASKED_CAPTIONS.build("cpu"), NEXT_WORD_CAPTIONS.build("cpu")
    assert sum(p.numel() for p in ma.parameters()) == sum(p.numel() for p in na.parameters())
    assert MASKED_CAPTIONS.train_config("cpu") == NEXT_WORD_CAPTIONS.train_config("cpu")
    assert torch.equal(MASKED_CAPTIONS.data("smoke"), NEXT_WORD_CAPTIONS.data("smoke"))


def test_obtain_trains_a_smoke_writer_and_loads_it_back(tmp_path):
    from course_lib.caption_models import MASKED_CAPTIONS, write_captions
    from course_lib.registry import obtain

    model, info = obtain(MASKED_CAPTIONS, "smoke", run_dir=tmp_path / "m", progress=False)
    assert info["steps"] == MASKED_CAPTIONS.train_config("smoke").steps and not info["cached"]
    again, info2 = obtain(MASKED_CAPTIONS, "smoke", run_dir=tmp_path / "m", progress=False)
    assert info2["cached"]
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert len(write_captions(model, 5, num_steps=3)) == 5
