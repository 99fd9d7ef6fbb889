"""napari dock widgets (Qt). The only part of napari-denoise that starts worker threads."""

from ._compare_widget import CompareWidget
from ._denoise_widget import DenoiseWidget
from ._train_widget import TrainWidget

__all__ = ["CompareWidget", "DenoiseWidget", "TrainWidget"]
