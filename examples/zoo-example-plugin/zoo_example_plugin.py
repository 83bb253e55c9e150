"""An example third-party zoo plugin: a model, its loader, a dataset and a command.

Install it with `pip install ./examples/zoo-example-plugin`; zoo finds it through the `zoo`
entry-point group, exactly as it finds its built-in plugins.
"""

import click
import numpy as np

import zoo

COLOURS = ("red", "green", "blue")


class DominantColour(zoo.Model):
    """Classifies an image by its strongest mean channel; no weights needed.

    zoo.Model decodes the inputs (to RGB PIL images), batches them and checks the options; this class
    writes only the work on one batch.
    """

    capabilities = frozenset({"classify"})
    labels = COLOURS

    def classify_batch(self, images, options):
        import torch

        means = torch.from_numpy(np.stack([np.asarray(image, dtype=np.float64).mean(axis=(0, 1)) for image in images]))
        return self.label_predictions(means / 32, options)


@zoo.hookimpl
def register_models(register):
    register({"name": "example-colour", "plugin": "example", "architecture": "dominant-colour",
              "labels": list(COLOURS), "tasks": ["classify"], "license": "mit"})


@zoo.hookimpl
def register_loaders(register):
    register("example", DominantColour)


@zoo.hookimpl
def register_datasets(register):
    def colours(root=None, split="test"):
        from zoo.datasets import Dataset

        items, targets = [], []
        for index in range(len(COLOURS)):
            image = np.zeros((8, 8, 3), dtype=np.uint8)
            image[..., index] = 200
            items.append(image)
            targets.append(index)
        return Dataset("example-colours", split, COLOURS, items, targets)

    register("example-colours", colours)


@zoo.hookimpl
def register_commands(cli):
    @cli.command()
    def colours():
        """List the colours the example model knows."""
        click.echo(", ".join(COLOURS))
