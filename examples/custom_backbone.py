"""Register your own backbone without forking zoo: in code, and in a user YAML file.

Run it from the repository root:  python examples/custom_backbone.py
It needs no network: it trains nothing big, and writes its weights and the probe model into a temporary folder.
"""

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

import zoo
from zoo.probe import probe


class TinyConvNet(nn.Module):
    """Any nn.Module works; forward_features (and forward_head) give zoo embeddings, forward gives logits."""

    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x):
        return self.stem(x)

    def forward(self, x):
        return self.head(self.forward_features(x))


CIFAR_PREPROCESS = {"input_size": 32, "mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.2435, 0.2616]}


# 1. In code: a builder function, registered with a decorator. Its weights (optional) come from `weights=`
#    or from the record's weights source; here the builder starts from random weights.
@zoo.register_model("tiny-convnet", labels="cifar10", tasks=["classify", "embed"], preprocess=CIFAR_PREPROCESS)
def tiny_convnet(width=16):
    torch.manual_seed(0)
    return TinyConvNet(width=width)


def write_yaml_model(folder):
    """A user YAML file naming a timm architecture and a local weights file; returns the file."""
    import timm

    backbone = timm.create_model("resnet18", num_classes=10)
    save_file(backbone.state_dict(), str(folder / "resnet18-cifar.safetensors"))
    (folder / "my-models.yaml").write_text(f"""
- name: my-resnet18
  plugin: timm
  architecture: resnet18
  model_args: {{num_classes: 10}}
  weights: {{path: {folder / 'resnet18-cifar.safetensors'}}}
  labels: cifar10
  tasks: [classify, embed]
  preprocess: {{input_size: 64, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}}
""")
    return folder / "my-models.yaml"


def main():
    samples = Path(__file__).resolve().parent.parent / "samples"
    model = zoo.load("tiny-convnet")
    print("code:", model.classify(samples / "cat.png", top_k=2)[0], tuple(model.embed(samples / "dog.png").shape))

    # 2. In a user YAML file, named by ZOO_REGISTRY. Its folder goes when the example ends, and so does the zoo home
    # the probe below saves its model in: that model's backbone exists only in this run.
    with tempfile.TemporaryDirectory() as folder:
        os.environ["ZOO_REGISTRY"] = str(write_yaml_model(Path(folder)))
        os.environ["ZOO_HOME"] = str(Path(folder) / "zoo-home")
        zoo.registry.reset()
        model = zoo.load("my-resnet18")
        print("yaml:", model.classify(samples / "ship.png", top_k=1)[0], tuple(model.embed(samples / "ship.png").shape))

        # 3. Either one can be probed like the built-ins: a linear head on frozen features, saved as a new model.
        result = probe("my-resnet18", dataset="cifar10-sample", epochs=20)
        print("probe:", result["name"], f"linear top-1 {result['linear_top1']:.2f}, k-NN {result['knn_top1']:.2f}")
        print("probe model:", zoo.load(result["name"]).classify(samples / "frog.png", top_k=1)[0])


if __name__ == "__main__":
    main()
