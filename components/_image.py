"""The container image every acgate component runs in, pinned to the package version.

Built from ``docker/Dockerfile`` and tagged with the acgate version, so a compiled pipeline
always names the image of the library it was compiled with. Defined here only.
"""

import acgate

IMAGE = f"ghcr.io/acgate/acgate:{acgate.__version__}"
