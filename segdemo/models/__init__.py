"""One model family per module; importing this package registers every model."""

from segdemo.models import maskrcnn, patch_classifier, sam_tiny, unet, upsampling  # noqa: F401
