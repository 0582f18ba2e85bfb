"""Chapter 11's real Stable Diffusion cell, offline (course_lib.real_sd; issue 25).

A tiny Stable Diffusion pipeline with random weights is built here from configs (a small
UNet2DConditionModel, AutoencoderKL and CLIP text model, and a CLIP tokenizer from a vocabulary this
test writes): nothing is downloaded. It runs through the cell's code path — the same function, with
the pipeline injected, and the notebook cell's own source — including the course's sampler driving
its U-Net and the cross-attention maps. Without a GPU, the cell's function returns one line and never
touches the network.
"""

import json
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import IPython.display
import matplotlib.pyplot as plt
import nbformat
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from course_lib import real_sd
from course_lib.real_sd import (
    BOXES, COURSE_PROMPT, RealDenoiser, RealSDResult, course_schedule, diffusers_ddim, latent_noise, paint_real_sd,
    parts_markdown, pipeline_parts, probe_hub, real_attention_maps, show_real_sd, token_positions, why_not,
)

CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / "11_stable_diffusion_in_miniature.ipynb"
WORDS = ["a", "cat", "wearing", "hat", "dog", "red", "on", "the"]


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """A CLIP BPE vocabulary and merges in which each of WORDS is one token (letters merge left to right)."""
    vocab, merges = {"<|startoftext|>": 0, "<|endoftext|>": 1}, []
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    for word in WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        merged = parts[0]
        for piece in parts[1:]:
            merges.append(f"{merged} {piece}")
            merged += piece
            vocab.setdefault(merged, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return folder / "vocab.json", folder / "merges.txt"


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab, merges = write_tokenizer_files(tmp_path_factory.mktemp("clip-tokenizer"))
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        bos_token_id=0, eos_token_id=1, pad_token_id=1, max_position_embeddings=77))
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    # SD-Turbo's scheduler configuration (its scheduler_config.json on the Hub)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       prediction_type="epsilon", steps_offset=1, timestep_spacing="trailing")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection, probe the Hub or load a checkpoint fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the cell touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(real_sd, "probe_hub", refuse)
    monkeypatch.setattr(real_sd, "load_real_pipeline", refuse)


def assert_one_line(message):
    assert isinstance(message, str) and message.startswith(real_sd.SKIPPED), message
    assert "\n" not in message and "Traceback" not in message and len(message) < 300, message


# ----------------------------------------------------------------------------- the cell's code path, offline
def test_the_cell_function_runs_on_an_injected_tiny_pipeline(tiny_pipe):
    result = paint_real_sd(True, profile="cpu", seed=0, pipe=tiny_pipe)
    assert isinstance(result, RealSDResult)
    assert result.prompt == COURSE_PROMPT == "a cat wearing a hat" and result.words == ("cat", "hat")
    for picture in (result.official, result.course):
        assert picture.shape == (3, 32, 32) and picture.min() >= -1 and picture.max() <= 1
        assert torch.isfinite(picture).all() and picture.std() > 0
    assert result.maps.shape == (2, 32, 32) and result.maps.min() >= 0
    assert torch.allclose(result.maps.flatten(1).amax(1), torch.ones(2))
    assert not torch.allclose(result.maps[0], result.maps[1])  # "cat" and "hat" are read in different places
    assert result.gap < 1e-4, f"the course's DDIM and diffusers' differ by {result.gap}"
    assert [p.box for p in result.parts] == list(BOXES)
    assert set(result.seconds) == {"official", "course"}
    fig = show_real_sd(result)
    assert len(fig.axes) == 4 and fig.axes[2].get_title() == '"cat"'
    plt.close(fig)


def test_the_notebook_cell_itself_runs_offline(tiny_pipe, monkeypatch, capsys):
    """The chapter's own cell, with a GPU pretended, the Hub answering and the download replaced by the tiny pipeline."""
    cell = next(c for c in nbformat.read(CHAPTER, as_version=4).cells
                if c.cell_type == "code" and "paint_real_sd(" in c.source)
    loads = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(real_sd, "is_cached", lambda model_id=real_sd.MODEL_ID: False)
    monkeypatch.setattr(real_sd, "probe_hub", lambda model_id, timeout=3.0, **kw: None)
    monkeypatch.setattr(real_sd, "load_real_pipeline", lambda model_id, device, **kw: loads.append((model_id, kw)) or tiny_pipe)
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    namespace = {"run": SimpleNamespace(profile="gpu", seed=0), "real_sd": True}
    exec(compile(cell.source, "chapter 11, the real thing", "exec"), namespace)
    assert loads == [("stabilityai/sd-turbo", {"local_files_only": False})]
    assert isinstance(namespace["real"], RealSDResult) and namespace["real"].gap < 1e-4
    assert len(shown) == 1 and shown[0].data.startswith("| box | the course (chapter 11) | this checkpoint |")
    assert "| U-Net | `CrossAttentionUNet`" in shown[0].data
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "largest pixel difference 0.000" in out[1]
    assert len(plt.get_fignums()) == 1
    plt.close("all")


def test_the_course_sampler_drives_the_real_unet_as_diffusers_ddim_does(tiny_pipe):
    """The course's DDIM (chapter 11's LATENT_DDIM) on RealDenoiser = diffusers' DDIMScheduler, with and without CFG."""
    z = latent_noise(tiny_pipe, seed=3)
    pictures = {}
    for s in (1.0, 3.0):
        pictures[s], _ = real_attention_maps(tiny_pipe, COURSE_PROMPT, ["hat"], num_steps=4, guidance_scale=s, noise=z)
        theirs = diffusers_ddim(tiny_pipe, COURSE_PROMPT, z, num_steps=4, guidance_scale=s)
        assert (pictures[s] - theirs).abs().max() < 1e-4, f"s = {s}"
    assert (pictures[3.0] - pictures[1.0]).abs().max() > 1e-3  # guidance did something, and diffusers agreed


def test_the_schedule_and_the_denoiser_are_the_pipelines(tiny_pipe):
    s = course_schedule(tiny_pipe)
    assert torch.allclose(s.alphas_cumprod, tiny_pipe.scheduler.alphas_cumprod, atol=1e-6)
    den = RealDenoiser(tiny_pipe)
    assert den.prediction_type == "epsilon"
    ids = real_sd.prompt_ids(tiny_pipe, [COURSE_PROMPT, ""])
    null = torch.full_like(ids[:1], -1)  # CFG's "no condition" is the empty prompt, as diffusers' negative half
    assert torch.equal(den.embed(null), den.embed(ids[1:]))
    with torch.no_grad():
        emb = tiny_pipe.encode_prompt(COURSE_PROMPT, "cpu", 1, False)[0]
    assert torch.allclose(den.embed(ids[:1]), emb, atol=1e-6)


def test_recording_the_maps_changes_nothing_and_puts_the_processors_back(tiny_pipe):
    before = {k: type(v) for k, v in tiny_pipe.unet.attn_processors.items()}
    z = latent_noise(tiny_pipe, seed=1)
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    ids = real_sd.prompt_ids(tiny_pipe, [COURSE_PROMPT])
    plain = RealDenoiser(tiny_pipe)(x, torch.tensor([500]), cond=ids)
    _, maps = real_attention_maps(tiny_pipe, COURSE_PROMPT, ["cat", "hat"], num_steps=2, noise=z)
    assert {k: type(v) for k, v in tiny_pipe.unet.attn_processors.items()} == before
    assert torch.allclose(RealDenoiser(tiny_pipe)(x, torch.tensor([500]), cond=ids), plain)
    assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all() and (maps > 0).any()


def test_token_positions_and_a_word_not_in_the_prompt(tiny_pipe):
    assert token_positions(tiny_pipe, COURSE_PROMPT, "cat") == [2]
    assert token_positions(tiny_pipe, COURSE_PROMPT, "hat") == [5]
    assert token_positions(tiny_pipe, COURSE_PROMPT, "a") == [1, 4]
    with pytest.raises(ValueError, match="'dog'"):
        real_attention_maps(tiny_pipe, COURSE_PROMPT, ["dog"], num_steps=1)


def test_the_parts_are_mapped_onto_the_course_boxes(tiny_pipe):
    parts = pipeline_parts(tiny_pipe)
    assert [p.box for p in parts] == ["tokenizer", "text encoder", "U-Net", "VAE", "scheduler"]
    table = parts_markdown(parts)
    for name in ("CLIPTokenizer", "CLIPTextModel", "UNet2DConditionModel", "AutoencoderKL", "EulerDiscreteScheduler",
                 "f = 2", "scaled_linear", "trailing", "77 ids"):
        assert name in table, name


def test_the_loader_reads_a_saved_checkpoint_offline_and_float16_runs(tiny_pipe, tmp_path, monkeypatch):
    """load_real_pipeline on the tiny pipeline saved as the Hub's fp16 files, with the Hub switched off;
    then the cell's path in float16 (what a GPU gets), whose sampler arithmetic stays in float32."""
    tiny_pipe.save_pretrained(tmp_path, variant="fp16")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = real_sd.load_real_pipeline(str(tmp_path), "cpu")
    assert type(loaded).__name__ == "StableDiffusionPipeline" and loaded.unet.dtype == torch.float32
    result = paint_real_sd(True, profile="cpu", pipe=loaded, num_steps=2)
    assert result.gap < 1e-4
    half = paint_real_sd(True, profile="cpu", pipe=loaded.to(torch.float16), num_steps=2)
    assert half.course.dtype == half.maps.dtype == torch.float32
    assert half.gap < 0.05 and (half.course - result.course).abs().max() < 0.05


# ----------------------------------------------------------------------------- one line, never a traceback
def test_without_a_gpu_the_cell_says_so_in_one_line_without_the_network(monkeypatch, no_network):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for profile in ("smoke", "cpu", "gpu"):
        message = paint_real_sd(True, profile=profile, seed=0)
        assert_one_line(message)
        assert "no CUDA GPU" in message and "stabilityai/sd-turbo" in message


def test_the_learner_can_opt_out(monkeypatch, no_network):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    message = paint_real_sd(False, profile="gpu", seed=0)
    assert_one_line(message)
    assert "real_sd=False" in message
    with pytest.raises(ValueError, match="real_sd"):
        paint_real_sd("yes", profile="gpu")


def test_the_smoke_profile_and_missing_packages_download_nothing(monkeypatch, no_network):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "smoke profile" in paint_real_sd(True, profile="smoke")
    import importlib.util
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real_find(name, *a))
    message = paint_real_sd(True, profile="gpu")
    assert_one_line(message)
    assert "diffusers not installed" in message


def test_no_network_is_one_line_and_a_cached_checkpoint_still_runs(monkeypatch, tiny_pipe):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(real_sd, "probe_hub", lambda model_id, timeout=3.0, **kw: "ConnectError: no route")
    monkeypatch.setattr(real_sd, "is_cached", lambda model_id=real_sd.MODEL_ID: False)
    loads = []
    monkeypatch.setattr(real_sd, "load_real_pipeline", lambda model_id, device, **kw: loads.append(kw) or tiny_pipe)
    message = paint_real_sd(True, profile="gpu")
    assert_one_line(message)
    assert "the Hugging Face Hub did not serve stabilityai/sd-turbo (ConnectError: no route)" in message and not loads
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = paint_real_sd(True, profile="gpu")
    assert_one_line(message)
    assert "HF_HUB_OFFLINE" in message and not loads
    monkeypatch.setattr(real_sd, "is_cached", lambda model_id=real_sd.MODEL_ID: True)
    assert why_not(True, "gpu") == (None, True)  # offline but cached: load from the cache only
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert isinstance(paint_real_sd(True, profile="cpu", num_steps=1), RealSDResult)
    assert loads == [{"local_files_only": True}]  # the probe failed, the cache answered


def test_a_failed_download_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(real_sd, "is_cached", lambda model_id=real_sd.MODEL_ID: False)
    monkeypatch.setattr(real_sd, "probe_hub", lambda model_id, timeout=3.0, **kw: None)

    def fail(model_id, device, **kw):
        raise OSError("No space left on device\nwhile writing the unet")

    monkeypatch.setattr(real_sd, "load_real_pipeline", fail)
    message = paint_real_sd(True, profile="gpu")
    assert_one_line(message)
    assert "loading stabilityai/sd-turbo failed (OSError: No space left on device while writing" in message


def test_the_probe_answers_within_its_timeout_when_nobody_listens():
    """The real probe against a local port where nothing listens (no traffic leaves this machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: connecting to it is refused at once
    start = time.perf_counter()
    problem = probe_hub("stabilityai/sd-turbo", timeout=1.0, endpoint=f"http://127.0.0.1:{port}")
    assert problem and "\n" not in problem
    assert time.perf_counter() - start < 3.0


def test_a_stuck_probe_cannot_hang_the_cell(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: time.sleep(30))
    start = time.perf_counter()
    assert probe_hub("stabilityai/sd-turbo", timeout=0.5) == "the Hugging Face Hub did not answer within 0.5 s"
    assert time.perf_counter() - start < 2.5
