"""The torch side of impasto: VGG19, the Gatys engine, the daemon and the CLI.

Importing this package does not import torch; the modules that need it do.
"""
