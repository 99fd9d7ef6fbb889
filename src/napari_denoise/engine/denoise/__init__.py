"""Denoising an image: filters, calibration, noise models, the pipeline, tiling, dask."""
