"""Architecture × encoder combinations a user may pick that smp cannot build as configured: refused up front, with
a fix that works (probed end to end in a matrix of 12 architectures × small encoders on odd image sizes)."""

from __future__ import annotations

import pytest

from segcli.errors import ConfigError
from segcli.models.factory import build_model


def test_dpt_preset_with_a_non_vit_timm_encoder_names_the_kwarg_to_remove():
    """`segcli train model=dpt model.encoder=tu-regnetx_002`: the preset's dynamic_img_size (a ViT's argument) is
    refused by the RegNet; `model.kwargs={}` does not drop it (Hydra merges), `~model.kwargs.dynamic_img_size` does,
    and DPT then trains on the RegNet."""
    with pytest.raises(ConfigError) as err:
        build_model("dpt", "tu-regnetx_002", classes=2, kwargs={"dynamic_img_size": True})
    assert "~model.kwargs.dynamic_img_size" in str(err.value)
    assert "\n" not in str(err.value)
    model = build_model("dpt", "tu-regnetx_002", classes=2, kwargs={})  # the fix it names builds
    assert type(model).__name__ == "DPT"
