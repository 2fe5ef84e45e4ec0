"""The Gatys et al. engine: VGG19 features, weights, losses, objective, L-BFGS, tiles, colour.

Everything under daemon/ needs torch; nothing under shared/ or plugin/ imports it.
"""
