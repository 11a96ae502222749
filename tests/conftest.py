"""Shared fixtures. Tests run on the CPU with small images. Mechanical tests use untrained,
seeded weights (torchvision's weights cannot be downloaded on the development and CI machines);
tests marked ``realweights`` use the real trained weights and pictures of the workplace's
shared folder (``../shared`` beside the repository, or ``EXPLORER_SHARED``): skipped with a
one-line reason where it is absent, required (a failure) when ``CI`` is set."""

import os
import sys
from pathlib import Path

# With 2 cores, torch's OpenMP threads busy-wait on each other when anything else runs:
# sleeping waits keep the suite fast on a shared machine (set before torch is imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Never try to download weights during tests; untrained weights must still be asked for.
os.environ.setdefault("EXPLORER_OFFLINE", "1")
# Keep the torch cache of the developer's machine out of the tests.
os.environ["TORCH_HOME"] = str(ROOT / ".pytest_cache" / "torch_home")
os.environ.pop("EXPLORER_WEIGHTS_DIR", None)


@pytest.fixture(scope="session")
def vgg19():
    """The shared untrained VGG19 (torchvision init under torch.manual_seed(0))."""
    from explorer.nets.models import load_model

    return load_model("vgg19", weights="untrained", device="cpu")


@pytest.fixture
def images64():
    """A content and a style image, (1, 3, 64, 64) in [0, 1], smooth and structured so that
    their features differ (a gradient with a disc vs. stripes)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    disc = (((x - 0.5) ** 2 + (y - 0.5) ** 2) < 0.08).float()
    content = torch.stack([x, y, disc]).unsqueeze(0)
    stripes = (torch.sin(x * 40) > 0).float()
    style = torch.stack([stripes, 1 - stripes, 0.5 * torch.ones_like(x)]).unsqueeze(0)
    return content, style


@pytest.fixture(scope="session")
def googlenet():
    """The shared untrained GoogLeNet (torchvision init under torch.manual_seed(0)), for Deep Dream."""
    from explorer.nets.models import load_model

    return load_model("googlenet", weights="untrained", device="cpu")


#: The workplace's shared folder of real weights and pictures (never copied into the repository).
SHARED = Path(os.environ.get("EXPLORER_SHARED") or ROOT.parent / "shared")


def shared_path(relative: str) -> Path:
    """A file or folder of the shared folder; skips the test with a one-line reason when it is
    missing, or fails it when ``CI`` is set (CI must run the real-weights tier)."""
    path = SHARED / relative
    if not path.exists():
        reason = f"real weights and pictures not found: {path} is missing (set EXPLORER_SHARED to the shared folder)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; with CI set the realweights tests must run")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def real_vgg19():
    """The original Caffe VGG19 conv layers (real ImageNet training), ``shared/weights``."""
    from explorer.nets.models import load_model

    return load_model("vgg19", weights=str(shared_path("weights/vgg19-caffe-features-q8.pth")), device="cpu")


@pytest.fixture(scope="session")
def real_mobilenet():
    """MobileNetV2 trained on ImageNet, with its classifier, ``shared/weights``."""
    from explorer.nets.models import load_model

    return load_model("mobilenet_v2", weights=str(shared_path("weights/mobilenet_v2-coral-int8.pth")), device="cpu")


@pytest.fixture(scope="session")
def shared_images() -> Path:
    """The folder of real pictures (paintings, photos, neural-style's reference outputs)."""
    return shared_path("images")
