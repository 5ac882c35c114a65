"""The container image every acgate component runs in, pinned to the package version.

Built from ``docker/Dockerfile`` and tagged with the acgate version, so a compiled pipeline
always names the image of the library it was compiled with. Defined here only.
``python pipeline.py compile --image-digest sha256:...`` pins the compiled pipeline to one
pushed build instead (:func:`image_by_digest`).
"""

import re

import acgate

#: Repository of the acgate image (docker/Dockerfile; the Helm chart's ``image.repository``).
IMAGE_REPOSITORY = "ghcr.io/acgate/acgate"
#: The image the components are declared with: the repository at the package version's tag.
IMAGE = f"{IMAGE_REPOSITORY}:{acgate.__version__}"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def image_by_digest(digest: str, repository: str = IMAGE_REPOSITORY) -> str:
    """The image reference ``repository@digest`` (what a pod pulls byte-for-byte).

    Args:
        digest: The image's manifest (or index) digest, ``sha256:`` and 64 lowercase hex
            characters, as ``docker buildx imagetools inspect`` or ``crane digest`` print it.
        repository: The image repository.

    Returns:
        ``"<repository>@sha256:<hex>"``.

    Raises:
        ValueError: ``digest`` is not ``sha256:`` followed by 64 lowercase hex characters.
    """
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ValueError(f"image digest {digest!r} must be 'sha256:' followed by 64 lowercase "
                         "hex characters, e.g. the output of 'crane digest IMAGE'")
    return f"{repository}@{digest}"
