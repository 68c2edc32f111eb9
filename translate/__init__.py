"""translate: image-to-image translation with CycleGAN and pix2pix."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Translator", "__version__"]


def __getattr__(name: str):
    # Lazy: importing the package (e.g. for the CLI's --help) must not pull in torch early.
    if name == "Translator":
        from translate.infer.translator import Translator

        return Translator
    raise AttributeError(name)
