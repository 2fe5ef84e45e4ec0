"""impasto's version, in one place: pyproject.toml reads it from here (hatch's version
source), the CLI's --version and the daemon's ping report it.

`impasto` is a namespace package spread over shared/, daemon/ and plugin/ (so that each
module's import name follows from its folder), which is why this is not in an __init__.
Nothing under shared/ may import torch: the GIMP bridge and the client CLI must start in
well under a second.
"""

__version__ = "0.1.0"
