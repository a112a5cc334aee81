"""One model family per module; importing this package registers every model."""

from segdemo.models import (  # noqa: F401
    click_net,
    maskrcnn,
    patch_classifier,
    sam_tiny,
    unet,
    upsampling,
)
