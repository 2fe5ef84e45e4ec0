"""What the daemon and its clients share: wire protocol, client, image codecs.

Nothing in this package may import torch: the GIMP bridge and the client CLI must
start in well under a second.
"""

__version__ = "0.1.0"
