"""The seed system's CIFAR CNN (the PyTorch-tutorial LeNet, seed-system.md §5.2) in plain PyTorch, and a
loader for its Lightning checkpoint that needs neither Lightning nor the seed's source tree.

conv1 (3→6, 5×5) → ReLU → MaxPool 2 → conv2 (6→16, 5×5) → ReLU → MaxPool 2 → flatten → fc1 (400→120) → ReLU
→ fc2 (120→84) → ReLU (``act4``: the 84-d features, decal's "body" output) → fc3 (84→10).

    python scripts/extract_features.py --model scripts/examples/seed_cnn.py:load \\
        --checkpoint ../shared/checkpoints/seed-cnn-cifar10-seed1.ckpt --layer act4 ...
"""

import pickle

import torch
from torch import nn
import torch.nn.functional as F


class SeedCNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.act4 = nn.ReLU()  # a module (not F.relu) so that a forward hook can catch the features
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(self.act4(self.fc2(x)))


class _Stub:
    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class _Unpickler(pickle.Unpickler):
    """Resolves the classes a Lightning checkpoint's metadata names (the seed's own modules, Lightning's
    callbacks) to inert stubs; tensors and plain containers load as usual."""

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Stub,), {})


class _PickleModule:
    Unpickler = _Unpickler
    load = staticmethod(pickle.load)


def load(checkpoint: str) -> SeedCNN:
    """The seed CNN with the weights of a Lightning checkpoint (``state_dict`` keys ``model.<name>``)."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False, pickle_module=_PickleModule)
    state = {k.removeprefix("model."): v for k, v in ck["state_dict"].items()}
    model = SeedCNN(num_classes=state["fc3.weight"].shape[0])
    model.load_state_dict(state)
    return model.eval()
