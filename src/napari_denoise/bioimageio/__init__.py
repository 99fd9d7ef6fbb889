"""Models in and out of napari-denoise through the bioimage.io model format (0.5).

- :func:`export_model` writes a blind 2-D model (shipped or trained here) as a bioimage.io
  model package: TorchScript and ``pytorch_state_dict`` weights, test tensors made from a
  real image, a cover, a README from the model card, size rules and halo.
- :func:`import_model` makes a bioimage.io denoising model (2-D, one channel in and out)
  a method of the user model folder; see :mod:`.import_` for what is accepted and why.

The intensity contract (how our per-image percentile normalisation is expressed) is in
:mod:`.export`. Everything runs offline: see :func:`offline_validation`.

This subpackage needs ``bioimageio.core`` (and so ``bioimageio.spec``, ``xarray``);
``import napari_denoise`` never imports it.
"""

from __future__ import annotations

from .common import BioimageioError, offline_validation
from .export import export_model
from .import_ import import_model

__all__ = ["BioimageioError", "export_model", "import_model", "offline_validation"]
