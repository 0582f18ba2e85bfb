"""Cats with hats: determinism, captions, exclusions, the tokenizer, and the shipped attribute classifier."""

import shutil

import pytest
import torch

from course_lib import captions, hats
from course_lib.checkpoints import sha256_file
from course_lib.models import attributes as attr_net


@pytest.fixture(scope="module")
def data():
    return hats.make_hats_dataset(400, seed=5)


def test_same_seed_same_pictures_other_seed_other_pictures(data):
    again = hats.make_hats_dataset(400, seed=5)
    assert torch.equal(again.images, data.images) and torch.equal(again.attributes, data.attributes)
    assert again.captions == data.captions
    other = hats.make_hats_dataset(400, seed=6)
    assert not torch.equal(other.images, data.images)
    assert not torch.equal(other.attributes, data.attributes)


def test_shapes_ranges_and_attribute_coding(data):
    x, a = data.images, data.attributes
    assert x.shape == (400, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.2
    assert a.shape == (400, captions.NUM_ATTRIBUTES) and a.dtype == torch.long and len(data.captions) == 400
    for col, name in enumerate(captions.ATTRIBUTE_NAMES):
        present = set(a[:, col].tolist()) - {captions.UNSPECIFIED}
        assert present == set(range(len(captions.ATTRIBUTE_VALUES[name]))), name  # every value shows up
    assert torch.equal(a[:, 2] == captions.UNSPECIFIED, a[:, 1] == 0)  # a colour exactly when there is a hat
    big = hats.make_hats_dataset(8, size=48, seed=1)
    assert big.images.shape == (8, 3, 48, 48)
    assert hats.make_hats_dataset(0).images.shape == (0, 3, 32, 32)
    # pictures differ from each other (jitter), and hats add hat-coloured pixels at the top
    assert (x[:-1] - x[1:]).abs().flatten(1).amax(1).min() > 0.05
    red = captions.HAT_COLOURS.index("red")
    redness = (x[:, 0] - x[:, 1:].mean(1))[:, :12].flatten(1).amax(1)  # (N,) in the top rows
    assert redness[a[:, 2] == red].min() > redness[a[:, 1] == 0].max()


def test_captions_match_attributes(data):
    for row, caption in zip(data.attributes, data.captions):
        said = captions.parse_prompt(caption)
        asked = said != captions.UNSPECIFIED
        assert asked[0], caption  # every caption names the animal
        assert torch.equal(said[asked], row[asked]), (caption, row)
        assert torch.equal(captions.parse_prompt(captions.caption_for(row, 0)), row)  # template 0 says everything
    assert len(set(data.captions)) > 40
    a = captions.HatAttributes("cat", True, "red", "blue")
    assert captions.caption_for(a) == "a cat wearing a red hat on a blue background"
    assert captions.decode_attributes(captions.encode_attributes("cat", hat_colour="red", background="blue")) == a
    with pytest.raises(ValueError, match="template"):
        captions.caption_for(a, template=captions.NUM_TEMPLATES)


def test_exclude_holds_combinations_out():
    n = 600
    d = hats.make_hats_dataset(n, seed=2, exclude={("dog", "green")})
    dog, green = captions.ANIMALS.index("dog"), captions.HAT_COLOURS.index("green")
    a = d.attributes
    assert not ((a[:, 0] == dog) & (a[:, 2] == green)).any()
    assert ((a[:, 0] != dog) & (a[:, 2] == green)).any()  # cats still wear green hats
    assert ((a[:, 0] == dog) & (a[:, 1] == 1)).any()  # dogs still wear other hats
    plain = hats.make_hats_dataset(n, seed=2)
    assert ((plain.attributes[:, 0] == dog) & (plain.attributes[:, 2] == green)).any()  # so the test can fail
    d2 = hats.make_hats_dataset(n, seed=2, exclude=[{"animal": "cat", "hat": False}, ("pink",)])
    assert not captions.excluded_mask(d2.attributes, [("cat", "no hat"), ("pink",)]).any()
    assert captions.excluded_mask(plain.attributes, [("cat", "no hat")]).any()
    with pytest.raises(ValueError, match="allowed"):
        hats.make_hats_dataset(10, exclude={("dog", "gren")})
    with pytest.raises(ValueError, match="no attribute combination"):
        hats.make_hats_dataset(10, exclude=[("cat",), ("dog",)])


def test_tokenize_round_trip_padding_and_errors(data):
    ids = captions.tokenize(data.captions)
    assert ids.shape == (400, captions.MAX_PROMPT_LENGTH) and ids.dtype == torch.long
    assert captions.detokenize(ids) == data.captions
    assert max(len(c.split()) for c in data.captions) <= captions.MAX_PROMPT_LENGTH
    longest = "a cat wearing a purple hat on a white background"  # 10 words, the longest template
    assert (captions.tokenize(longest)[:10] != captions.PAD_ID).all()
    assert (captions.tokenize(longest)[10:] == captions.PAD_ID).all()
    assert torch.equal(captions.tokenize("A Cat, wearing a RED hat!"), captions.tokenize("a cat wearing a red hat"))
    assert torch.equal(captions.tokenize(""), torch.full((captions.MAX_PROMPT_LENGTH,), captions.PAD_ID))
    assert captions.VOCAB[captions.PAD_ID] == captions.PAD and len(set(captions.VOCAB)) == len(captions.VOCAB)
    with pytest.raises(ValueError) as err:
        captions.tokenize("a cat wearing a crown")
    assert "crown" in str(err.value) and all(w in str(err.value) for w in captions.VOCAB[1:])
    with pytest.raises(ValueError, match="MAX_PROMPT_LENGTH"):
        captions.tokenize(" ".join(["cat"] * (captions.MAX_PROMPT_LENGTH + 1)))
    assert captions.parse_prompt("").tolist() == [captions.UNSPECIFIED] * 4
    assert captions.parse_prompt("a dog with no hat").tolist() == [1, 0, -1, -1]


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="size"):
        hats.make_hats_dataset(4, size=8)
    with pytest.raises(ValueError, match="n"):
        hats.make_hats_dataset(-1)
    with pytest.raises(ValueError, match="animal"):
        captions.encode_attributes("cow")


# ----------------------------------------------------------------------------- the shipped classifier
def test_shipped_weights_match_their_card():
    card = attr_net.read_card()
    assert sha256_file(attr_net.WEIGHTS_FILE) == card["sha256"]
    assert attr_net.WEIGHTS_FILE.stat().st_size == card["info"]["size_bytes"] < 1_000_000
    model = attr_net.load_attribute_classifier()
    assert not model.training and sum(p.numel() for p in model.parameters()) == card["identity"]["num_parameters"]


def test_altered_weights_fail_with_both_hashes(tmp_path):
    bad = tmp_path / "attributes.safetensors"
    shutil.copy(attr_net.WEIGHTS_FILE, bad)
    raw = bytearray(bad.read_bytes())
    raw[-5] ^= 0xFF  # flip one byte inside the last tensor
    bad.write_bytes(bytes(raw))
    expected = attr_net.read_card()["sha256"]
    with pytest.raises(ValueError) as err:
        attr_net.load_attribute_classifier(bad, expected_sha256=expected)
    message = str(err.value)
    assert str(bad) in message and expected in message and sha256_file(bad) in message
    with pytest.raises(FileNotFoundError, match="path="):
        attr_net.load_attribute_classifier(tmp_path / "missing.safetensors")


def test_classifier_recognises_fresh_pictures():
    fresh = hats.make_hats_dataset(600, seed=4242)  # training used seed 1000, the card's held-out set 2000
    acc = attr_net.attribute_accuracies(fresh.images, fresh.attributes)
    assert set(acc) == set(captions.ATTRIBUTE_NAMES) and min(acc.values()) >= 0.95, acc
    assert attr_net.prompt_accuracy(fresh.images, fresh.attributes) >= 0.95
    # a partial request checks only what it names: "a dog" is right on dogs and wrong on cats
    dogs = fresh.attributes[:, 0] == captions.ANIMALS.index("dog")
    request = captions.parse_prompt("a dog")
    assert attr_net.prompt_accuracy(fresh.images[dogs], request) >= 0.95
    assert attr_net.prompt_accuracy(fresh.images[~dogs], request) <= 0.05
    # pure noise is not "a cat in a red hat on a blue background" (the score can fail)
    noise = torch.rand(200, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert attr_net.prompt_accuracy(noise, captions.parse_prompt("a cat in a red hat on a blue background")) < 0.5
    big = hats.make_hats_dataset(200, size=48, seed=4243)
    assert attr_net.prompt_accuracy(big.images, big.attributes) >= 0.9  # resized to 32 inside


def test_classifier_input_checks():
    with pytest.raises(ValueError, match="3 channel"):
        attr_net.predict_attributes(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        attr_net.predict_attributes(torch.full((2, 3, 32, 32), 3.0))
    with pytest.raises(ValueError, match="attrs"):
        attr_net.prompt_accuracy(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, dtype=torch.long))
