"""Shared steps of the training tests."""

from eqspice.learning.run.loop import train


def whole_and_resumed(config, tmp_path, stop_after_epochs=2):
    """The same run trained in one go and interrupted after ``stop_after_epochs`` then resumed:
    ``(whole, resumed)`` final states, in ``tmp_path / "whole"`` and ``tmp_path / "split"``."""
    whole = train(config, tmp_path / "whole", progress=False)
    train(config, tmp_path / "split", progress=False, stop_after_epochs=stop_after_epochs)
    resumed = train(config, tmp_path / "split", resume=True, progress=False)
    return whole, resumed
