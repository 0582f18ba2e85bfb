"""Issue 11: sample()'s defaults are chapter 06's best sampler, and a model's own prediction_type is honoured."""

import pytest
import torch

from course_lib.forward import prediction_type_of
from course_lib.guidance import cfg_model
from course_lib.samplers import sample
from course_lib.solvers import EDM_SIGMA_MAX
from course_lib.schedules import sigma_to_t
from course_lib.schedules import make_schedule


class Recorder(torch.nn.Module):
    def __init__(self, kind=None):
        super().__init__()
        self.ts = []
        if kind is not None:
            self.prediction_type = kind

    def forward(self, x, t, cond=None):
        self.ts.append(t.float()[0].item())
        return torch.zeros_like(x)


def test_prediction_type_of():
    assert prediction_type_of(object()) == "epsilon"
    assert prediction_type_of(Recorder("v_prediction")) == "v_prediction"
    assert prediction_type_of(Recorder("v_prediction"), "sample") == "sample"
    with pytest.raises(ValueError):
        prediction_type_of(Recorder("x"))


class Wobbly(torch.nn.Module):
    """A denoiser whose guess depends on x_t and t, so that different samplers land in different places."""

    def forward(self, x, t, cond=None):
        return 0.5 * x + 0.01 * t.float().view(-1, *[1] * (x.dim() - 1))


def test_default_sampler_is_sde_dpmpp_2m_on_karras_from_80():
    s = make_schedule("cosine")
    net = Recorder()
    sample(net, s, (2, 1, 4, 4), num_steps=5, generator=torch.Generator().manual_seed(0), progress=False)
    assert len(net.ts) == 5
    assert net.ts[0] == pytest.approx(float(sigma_to_t(s, EDM_SIGMA_MAX)), abs=1e-3)
    # the default is exactly the stochastic DPM-Solver++(2M) on the karras grid, and no other sampler
    run = lambda **kw: sample(Wobbly(), s, (2, 1, 4, 4), num_steps=5, progress=False,  # noqa: E731
                              generator=torch.Generator().manual_seed(0), **kw)
    default = run()
    assert torch.equal(default, run(sampler="dpmpp_2m_sde", spacing="karras", sigma_max=EDM_SIGMA_MAX))
    for other in ("euler", "dpmpp_2m", "heun", "ddim"):
        assert not torch.allclose(default, run(sampler=other)), f"the default sampler behaves like {other!r}"


def test_model_prediction_type_is_used_and_survives_guidance():
    s = make_schedule("cosine")
    z = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    kw = dict(sampler="ddim", num_steps=4, noise=z, progress=False)
    v_model = Recorder("v_prediction")
    as_v = sample(v_model, s, z.shape, **kw)
    assert torch.allclose(as_v, sample(Recorder(), s, z.shape, prediction_type="v_prediction", **kw))
    assert not torch.allclose(as_v, sample(Recorder(), s, z.shape, **kw))
    assert cfg_model(v_model, 3.0).prediction_type == "v_prediction"
    labels = torch.tensor([0, 1])
    guided = sample(v_model, s, z.shape, cond=labels, guidance_scale=3.0, **kw)
    assert torch.allclose(guided, sample(cfg_model(v_model, 3.0), s, z.shape, cond=labels, **kw))
