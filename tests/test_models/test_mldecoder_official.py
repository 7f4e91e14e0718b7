"""ML-Decoder heads against the official code, imported at test time (tests/official.py).

* Linear head: Alibaba-MIIL/ML_Decoder ``src_files/ml_decoder/ml_decoder.py`` (in
  ``../shared/reference``): official ``MLDecoder`` built small with random weights, its
  state_dict converted by ``models.heads.from_official_ml_decoder_state_dict`` into
  ``MLDecoderHead``, same features, eval mode, outputs equal to 1e-5.
* Cosine head, ``aam_style="authors"``: the AAM authors' deep-object-reid
  ``torchreid/models/ml_decoder.py`` (``MLDecoder`` with the ``am_binary`` loss: ``GroupASL``,
  LeakyReLU(0.2), the bias) and ``torchreid/losses/am_softmax.py`` (``AngleSimpleLinear``).
  deep-object-reid is not in shared/: these tests skip unless its files are found under
  ``$MLLB_REFERENCE_CODE`` in the layout ``openvinotoolkit__deep-object-reid/<path>`` (exported
  from github.com/openvinotoolkit/deep-object-reid, multilabel code at commit f695f068).

With torch 2.x the official ``MLDecoder.forward`` fails at its ``self.decoder(tgt, memory)``
(``nn.TransformerDecoder`` reads ``layers[0].self_attn``, which the official layer lacks). The
tests run the official forward unchanged except for that call, which becomes what torch 1.x's
``TransformerDecoder`` did with one layer and no norm: ``decoder.layers[0](tgt, memory)``.
"""

from __future__ import annotations

import sys
import types
import warnings

import pytest
import torch
from official import import_official
from torch import Tensor, nn

from models.heads import CosineHead, MLDecoderHead, from_official_ml_decoder_state_dict

ML_DECODER = ("Alibaba-MIIL__ML_Decoder", "src_files/ml_decoder/ml_decoder.py")
AAM_REPO = "openvinotoolkit__deep-object-reid"
IN_FEATURES, EMBED = 24, 16  # 16 = 2 per head of the official 8-head attention


def _import_ml_decoder(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The official ml_decoder.py. Its ``GroupFC`` is a ``@torch.jit.script`` class; scripting
    reads the class's source through ``sys.modules``, where a file imported by path is not, so
    the decorator is the identity while it imports (TorchScript compiles the same loop; the
    Python class computes the same numbers)."""
    monkeypatch.setattr(torch.jit, "script", lambda obj, *args, **kwargs: obj)
    return import_official(*ML_DECODER)


def _one_layer_decoder(module: nn.Module) -> None:
    """Replace ``module.decoder``'s forward (torch 2.x incompatible) by its single layer."""
    decoder = module.decoder
    assert len(decoder.layers) == 1 and decoder.norm is None
    decoder.forward = lambda tgt, memory: decoder.layers[0](tgt, memory)


def _inputs(seed: int = 0) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, IN_FEATURES, 3, 3, generator=g),  # feature map [N, D, H, W]
            torch.randn(2, 5, IN_FEATURES, generator=g)]  # tokens [N, T, D]


@pytest.mark.parametrize(("num_labels", "groups"), [(10, 4), (12, 4), (7, 100), (9, 1)])
def test_linear_mldecoder_equals_official(monkeypatch: pytest.MonkeyPatch, num_labels: int,
                                          groups: int) -> None:
    official = _import_ml_decoder(monkeypatch)
    torch.manual_seed(0)
    ref = official.MLDecoder(num_labels, num_of_groups=groups, decoder_embedding=EMBED,
                             initial_num_features=IN_FEATURES).eval()
    nn.init.normal_(ref.decoder.duplicate_pooling_bias)  # the official init is 0
    _one_layer_decoder(ref)
    head = MLDecoderHead(IN_FEATURES, num_labels, num_groups=groups, embed_dim=EMBED).eval()
    head.load_state_dict(from_official_ml_decoder_state_dict(ref.state_dict()), strict=True)
    for x in _inputs():
        with torch.no_grad():
            torch.testing.assert_close(head(x), ref(x.clone()), rtol=0, atol=1e-5)


def test_converter_prefix_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    official = _import_ml_decoder(monkeypatch)
    torch.manual_seed(0)
    ref = official.MLDecoder(6, num_of_groups=3, decoder_embedding=EMBED,
                             initial_num_features=IN_FEATURES)
    whole = {"body.conv.weight": torch.zeros(1),
             **{f"head.{k}": v for k, v in ref.state_dict().items()}}  # a TResNet with its head
    converted = from_official_ml_decoder_state_dict(whole, prefix="head.")
    assert converted.keys() == MLDecoderHead(IN_FEATURES, 6, num_groups=3,
                                             embed_dim=EMBED).state_dict().keys()
    with pytest.raises(ValueError, match="no official ML-Decoder keys"):
        from_official_ml_decoder_state_dict(whole)
    with pytest.raises(ValueError, match="unknown key"):
        from_official_ml_decoder_state_dict({**ref.state_dict(), "decoder.extra": torch.zeros(1)})
    zsl = official.MLDecoder(6, decoder_embedding=EMBED, initial_num_features=IN_FEATURES, zsl=1)
    with pytest.raises(ValueError, match="zero-shot"):
        from_official_ml_decoder_state_dict(zsl.state_dict())


# --------------------------------------------------------------------------------------------
# the AAM authors' cosine heads (deep-object-reid; local runs only)


class _ModelInterface(nn.Module):
    """Stand-in for deep-object-reid's ``torchreid.models.common.ModelInterface``: only the
    attributes ``MLDecoder`` reads (its constructor stores these arguments under these names)."""

    def __init__(self, num_classes: int = 1000, loss: str = "softmax",
                 mix_precision: bool = False, similarity_adjustment: bool = False,
                 **kwargs: object) -> None:
        super().__init__()
        self.num_classes, self.loss, self.mix_precision = num_classes, loss, mix_precision
        self.similarity_adjustment = similarity_adjustment


class _FeatureMap(nn.Module):
    """A backbone returning its input as the feature map (``return_featuremaps=True``)."""

    num_features = IN_FEATURES

    def forward(self, x: Tensor, return_featuremaps: bool = False) -> Tensor:
        assert return_featuremaps
        return x


def _import_aam_ml_decoder(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """deep-object-reid's ml_decoder.py with its one project import stubbed."""
    common = types.ModuleType("torchreid.models.common")
    common.ModelInterface = _ModelInterface
    for name in ("torchreid", "torchreid.models"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "torchreid.models.common", common)
    return import_official(AAM_REPO, "torchreid/models/ml_decoder.py")


@pytest.mark.parametrize(("num_labels", "groups"), [(10, 4), (7, 100)])
def test_cosine_mldecoder_equals_aam_authors(monkeypatch: pytest.MonkeyPatch, num_labels: int,
                                             groups: int) -> None:
    official = _import_aam_ml_decoder(monkeypatch)
    torch.manual_seed(0)
    ref = official.MLDecoder(_FeatureMap(), num_labels, num_of_groups=groups,
                             decoder_embedding=EMBED, initial_num_features=IN_FEATURES,
                             loss="am_binary").eval()
    nn.init.normal_(ref.decoder.duplicate_pooling_bias)  # trainable there; the init is 0
    _one_layer_decoder(ref)
    head = MLDecoderHead(IN_FEATURES, num_labels, head="cosine", num_groups=groups,
                         embed_dim=EMBED).eval()
    assert head.aam_style == "authors" and head.duplicate_pooling_bias.requires_grad
    head.load_state_dict(from_official_ml_decoder_state_dict(ref.state_dict()), strict=True)
    mllb = MLDecoderHead(IN_FEATURES, num_labels, head="cosine", num_groups=groups,
                         embed_dim=EMBED, aam_style="mllb").eval()
    mllb.load_state_dict(head.state_dict())
    for x in _inputs():
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.cuda.amp.autocast there
            (expected,) = ref(x.clone())
            torch.testing.assert_close(head(x), expected, rtol=0, atol=1e-5)
            # today's variant differs (no bias, ReLU): the test sees the difference
            assert not torch.allclose(mllb(x), expected, atol=1e-3)


def test_gap_cosine_head_equals_angle_simple_linear() -> None:
    official = import_official(AAM_REPO, "torchreid/losses/am_softmax.py")
    torch.manual_seed(0)
    ref = official.AngleSimpleLinear(IN_FEATURES, 5)  # weight [D, C]
    head = CosineHead(IN_FEATURES, 5)
    head.load_state_dict({"weight": ref.weight.detach().T.contiguous()})  # [C, D]
    x = torch.randn(4, IN_FEATURES)
    torch.testing.assert_close(head(x), ref(x), rtol=0, atol=1e-6)
