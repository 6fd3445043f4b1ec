"""Small models for tests, importable as ``python:tests.helpers_models:<factory>``."""

from __future__ import annotations

from torch import nn

# A ViT small enough for CPU tests: 3 blocks, 48 dims, 32 px inputs in 4 px patches (8 x 8 tokens).
TINY_VIT_KWARGS = dict(
    img_size=32, patch_size=4, depth=3, embed_dim=48, num_heads=3, num_classes=10
)
TINY_VIT = "timm:vit_tiny_patch16_224"


class TinyConvNet(nn.Module):
    """conv-bn-relu stem, two conv blocks, global pooling, a linear classifier. Input (B, 3, S, S)."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.block1 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.block2(self.block1(self.stem(x))))))


def tiny_convnet(num_classes: int = 10, width: int = 8) -> nn.Module:
    return TinyConvNet(num_classes=num_classes, width=width)


def tiny_mixer(
    num_classes: int = 10,
    img_size: int = 32,
    patch_size: int = 4,
    num_blocks: int = 3,
    embed_dim: int = 48,
) -> nn.Module:
    """The ladder's MLP-Mixer (:func:`layerprobe.pretrain.ladder.mlp_mixer`) shrunk."""
    from layerprobe.pretrain.ladder import mlp_mixer

    return mlp_mixer(
        num_classes=num_classes,
        img_size=img_size,
        patch_size=patch_size,
        num_blocks=num_blocks,
        embed_dim=embed_dim,
    )


def tiny_resnet(num_classes: int = 10) -> nn.Module:
    """A timm ResNet with one BasicBlock per stage."""
    from timm.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)


def tiny_torchvision_vit(num_classes: int = 10) -> nn.Module:
    """A torchvision VisionTransformer: 32 px, 8 px patches, 2 layers, 16 dims."""
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=num_classes,
    )


def flat_mlp(num_classes: int = 10, size: int = 32) -> nn.Module:
    """Flatten + Linear: works only on (B, 3, size, size) inputs."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, num_classes))


def not_a_module():
    """A factory that returns something else (for error tests)."""
    return 42


class _Reordered(nn.Module):
    """Children registered in another order than the forward pass runs them."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.fc = nn.Linear(8, num_classes)
        self.late = nn.Conv2d(4, 8, 3, padding=1)
        self.early = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.fc(self.late(self.early(x)).mean(dim=(2, 3)))


def reordered_net(num_classes: int = 10) -> nn.Module:
    return _Reordered(num_classes)


def tiny_torchvision_swin(num_classes: int = 10) -> nn.Module:
    """A torchvision Swin: its stages output channels-last maps (B, H, W, C)."""
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(
        patch_size=[4, 4],
        embed_dim=16,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=[4, 4],
        num_classes=num_classes,
    )


def clashing_net(
    pretrained: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    mean: float = 0.0,
    std: float = 1.0,
    layers: int = 2,
    pool: str = "avg",
    quiet: bool = False,
) -> nn.Module:
    """A factory whose own arguments are named like layerprobe's options: ``layers`` convs."""
    width = 6 if pretrained else 4
    convs = [nn.Conv2d(3 if i == 0 else width, width, 3, padding=1) for i in range(int(layers))]
    return nn.Sequential(*convs, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))
