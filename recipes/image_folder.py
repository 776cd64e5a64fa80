"""Image folder with augmentation (seed 003, ``ImageDataset``).

What it models: the everyday vision pipeline, a folder of JPEG photos read by the seed's
``ImageDataset`` (``glob`` of ``*.jpg``, ``Image.open`` per sample, a transform) with the usual
training augmentation: random resized crop to 128x128, random horizontal flip, to tensor,
normalise with the ImageNet mean and std. ``torchvision.transforms`` is used when it is
installed; otherwise the module-level Pillow + numpy classes below do the same work the same
way (crop box drawn like torchvision's ``RandomResizedCrop``, bilinear resize in Pillow).

The 480 JPEGs (500x375 RGB, the typical ImageNet photo size, three classes of coloured shapes
on smooth noisy backgrounds, quality 90, 22 MB) are written once, deterministically, to
``~/.cache/dlprof/recipes/image_folder/`` (about 2.5 s the first time; later imports only list
the folder). Every sample is a real JPEG decode plus a resize and float maths, about 2 ms of
CPU, so a batch of 32 takes about 60 ms to build, while the step, a small two-convolution CNN
with SGD, takes a few milliseconds.
Expected: data-bound, stage fetch (cpu)
Best: on 2 cores, the whole epoch (15 batches) in flight on kept workers, e.g. num_workers=16,
persistent_workers=True (the workers decode the epoch while the step waits, then the step runs
alone: its intra-op threads and the workers stop competing); num_workers=2 with persistent
workers comes close (decoding is CPU work, one worker per core)

Run it: ``python recipes/image_folder.py`` (trains one epoch, prints the loss);
profile it: ``dlprof profile recipes/image_folder.py``.
"""
import glob
import math
import os
import shutil
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from PIL import Image
from torch.utils.data import DataLoader, Dataset

NUM_IMAGES = 480
NUM_CLASSES = 3
IMAGE_WIDTH, IMAGE_HEIGHT = 500, 375  # the typical ImageNet photo
CROP_SIZE = 128
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "dlprof", "recipes", "image_folder")


def _make_jpeg_folder(folder: str, count: int = NUM_IMAGES, seed: int = 0) -> None:
    """Write ``count`` JPEGs named ``c<label>_<index>.jpg``; atomic, so concurrent imports are safe."""
    if len(glob.glob(os.path.join(folder, "*.jpg"))) == count:
        return
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".image_folder-", dir=parent)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH].astype(np.float32) / IMAGE_HEIGHT
    for index in range(count):
        label = index % NUM_CLASSES
        # smooth colour field: an 8x8 random grid upsampled by Pillow
        grid = rng.integers(40, 215, size=(8, 8, 3), dtype=np.uint8)
        background = np.asarray(Image.fromarray(grid).resize((IMAGE_WIDTH, IMAGE_HEIGHT), Image.BICUBIC))
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.9), rng.uniform(0.12, 0.25)
        if label == 0:  # a red disc
            mask, colour = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2, (220, 40, 40)
        elif label == 1:  # a green square
            mask, colour = (abs(yy - cy) < r) & (abs(xx - cx) < r), (40, 200, 60)
        else:  # blue stripes
            mask, colour = np.sin(xx * 40 + rng.uniform(0, 6)) > 0.3, (40, 60, 220)
        pixels = np.where(mask[..., None], np.array(colour, dtype=np.int16), background.astype(np.int16))
        pixels += rng.integers(-20, 21, size=pixels.shape, dtype=np.int16)  # sensor-like noise
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(os.path.join(staging, f"c{label}_{index:04d}.jpg"), quality=90)
    if os.path.isdir(folder) and len(glob.glob(os.path.join(folder, "*.jpg"))) != count:
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder from elsewhere: replace it
    try:
        os.rename(staging, folder)
    except OSError:  # another process renamed its copy first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)


# --- torchvision.transforms, or an equivalent in Pillow + numpy -----------------------------

class RandomResizedCrop:
    """torchvision's RandomResizedCrop: area in ``scale``, aspect ratio in ``ratio`` (log-uniform)."""

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> None:
        self.size, self.scale, self.ratio = size, scale, ratio

    def _box(self, width: int, height: int) -> tuple[int, int, int, int]:
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(*self.scale).item()
            aspect = math.exp(torch.empty(1).uniform_(*log_ratio).item())
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, size=(1,)).item())
                left = int(torch.randint(0, width - w + 1, size=(1,)).item())
                return left, top, w, h
        side = min(width, height)  # fallback: central crop
        return (width - side) // 2, (height - side) // 2, side, side

    def __call__(self, image: Image.Image) -> Image.Image:
        left, top, w, h = self._box(*image.size)
        return image.resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + w, top + h))


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.transpose(Image.FLIP_LEFT_RIGHT) if torch.rand(1).item() < self.p else image


class ToTensor:
    """HWC uint8 Pillow image -> CHW float32 tensor in [0, 1]."""

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


class Normalize:
    def __init__(self, mean, std) -> None:
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return (tensor - self.mean) / self.std


class Compose:
    def __init__(self, transforms) -> None:
        self.transforms = transforms

    def __call__(self, image):
        for transform in self.transforms:
            image = transform(image)
        return image


try:
    from torchvision import transforms as T
except ImportError:
    T = None

if T is not None:
    train_transform = T.Compose([
        T.RandomResizedCrop(CROP_SIZE), T.RandomHorizontalFlip(), T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
else:
    train_transform = Compose([
        RandomResizedCrop(CROP_SIZE), RandomHorizontalFlip(), ToTensor(),
        Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class ImageDataset(Dataset):
    """The seed's ImageDataset, returning the label (from the file name) with the image."""

    def __init__(self, image_dir: str, transform=None) -> None:
        self.image_paths = sorted(glob.glob(f"{image_dir}/*.jpg"))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, idx):
        path = self.image_paths[idx]
        with Image.open(path) as image:
            image = image.convert("RGB")
        if self.transform:
            image = self.transform(image)
        label = int(os.path.basename(path)[1])
        return image, label


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=5, stride=4, padding=2),
            nn.ReLU(),
            nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


torch.manual_seed(0)
_make_jpeg_folder(CACHE_DIR)
train_dataset = ImageDataset(CACHE_DIR, transform=train_transform)
loader = DataLoader(train_dataset, batch_size=32, shuffle=True)

model = SmallCNN()
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def train_step(batch) -> float:
    images, labels = batch
    optimizer.zero_grad()
    loss = criterion(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        print(f"step {step:3d}  loss {loss:.4f}")
    print(f"final loss {loss:.4f}")
