"""One model family per module; importing this package registers every model."""

from segdemo.models import patch_classifier, upsampling  # noqa: F401
