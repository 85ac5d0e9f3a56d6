"""Views and tiling as the official preprocessing makes them (torchvision v2.Resize, mmcv imrescale)."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode, v2

from textregion_ros.config import auto_tiles
from textregion_ros.tokens import ViewPlan, make_views, plan_views


@pytest.mark.parametrize("fixture,mode", [("clip_encoder", InterpolationMode.BICUBIC),
                                          ("pe_encoder", InterpolationMode.BILINEAR)])
def test_views_are_torchvision_antialiased_resizes(fixture, mode, request, scene):
    enc = request.getfixturevalue(fixture)
    assert enc.interpolation == mode.value
    img = torch.from_numpy(scene.rgb).permute(2, 0, 1).float() / 255
    views = make_views(img, 224, ViewPlan(None, (2, 2)), True, enc.interpolation)
    expect_global = v2.Resize((224, 224), interpolation=mode, antialias=True)(img)
    assert torch.allclose(views[0], expect_global, atol=1e-5)
    tile = v2.Resize((224, 224), interpolation=mode, antialias=True)(img[:, 240:480, 320:640])
    assert torch.allclose(views[4], tile, atol=1e-5)
    # Without antialiasing (the old path) the 640x480 -> 224 view is visibly different.
    plain = F.interpolate(img[None], size=(224, 224), mode=mode.value, align_corners=False)[0]
    assert (plain - expect_global).abs().max() > 0.05


def test_auto_tiles_follow_the_official_rule():
    # short side to 672, long side at most 2016 (mmcv imrescale), then floor(side / crop) tiles
    assert auto_tiles(480, 640, 336) == ((672, 896), (2, 2))
    assert auto_tiles(720, 1280, 336) == ((672, 1195), (2, 3))  # 16:9 is not squashed into 2x2
    assert auto_tiles(480, 640, 224) == ((672, 896), (3, 4))
    assert auto_tiles(100, 4000, 336) == ((50, 2016), (1, 6))  # the long-side cap wins
    plan = plan_views((720, 1280), "auto", 336)
    assert plan == ViewPlan((672, 1195), (2, 3))
    img = torch.rand(3, 720, 1280)
    views = make_views(img, 336, plan, True, "bicubic")
    assert views.shape == (7, 3, 336, 336)
    # The last tile slides back inside the rescaled frame: it is its bottom-right ceil-sized crop.
    rescaled = F.interpolate(img[None], size=(672, 1195), mode="bilinear", align_corners=False)[0]
    last = v2.Resize((336, 336), interpolation=InterpolationMode.BICUBIC, antialias=True)(
        rescaled[:, 672 - 336:, 1195 - 399:])
    assert torch.allclose(views[-1], last, atol=1e-5)
    assert plan_views((480, 640), "none", 224) == ViewPlan(None, (0, 0))
    assert plan_views((480, 640), "2x3", 224) == ViewPlan(None, (2, 3))
