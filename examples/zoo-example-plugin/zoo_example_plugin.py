"""An example third-party zoo plugin: a model, its loader, a dataset and a command.

Install it with `pip install ./examples/zoo-example-plugin`; zoo finds it through the `zoo`
entry-point group, exactly as it finds its built-in plugins.
"""

import click

import zoo

COLOURS = ("red", "green", "blue")


class DominantColour(zoo.Model):
    """Classifies an image by its strongest mean channel; no weights needed."""

    capabilities = frozenset({"classify"})

    def classify(self, images, *, top_k=5, labels=None):
        import numpy as np

        from zoo.inputs import load_images

        results = []
        for image in load_images(images):
            means = np.asarray(image, dtype=np.float64).mean(axis=(0, 1))
            scores = np.exp(means / 32) / np.exp(means / 32).sum()
            order = np.argsort(-scores)[:top_k]
            results.append([zoo.Prediction(COLOURS[i], int(i), float(scores[i])) for i in order])
        return results


@zoo.hookimpl
def register_models(register):
    register({"name": "example-colour", "plugin": "example", "architecture": "dominant-colour",
              "labels": list(COLOURS), "tasks": ["classify"], "license": "mit"})


@zoo.hookimpl
def register_loaders(register):
    register("example", lambda record, weights, **options: DominantColour(record))


@zoo.hookimpl
def register_datasets(register):
    def colours(root=None, split="test"):
        import numpy as np

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
